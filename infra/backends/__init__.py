"""Backends translate a plan into an API: Docker directly (local) or Pulumi resources."""
