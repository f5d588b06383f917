"""The InferOps API: pydantic models that are the one source of truth for the CRDs."""
