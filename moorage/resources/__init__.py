"""The resource model as plain data. Imports nothing else from moorage but errors."""
