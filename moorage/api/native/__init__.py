"""The native REST API: the SageMaker shapes as JSON resources, with an OpenAPI document."""
