"""The service's routes, one router per resource: health, the model, sessions, inferences."""
