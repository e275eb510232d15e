"""The AWS wire protocols: a thin translation over control/ services."""
