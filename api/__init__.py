"""REST API: FastAPI routes, request and response models, problem responses."""
