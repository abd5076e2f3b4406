"""Locust load scenarios (see loadtests/README.md)."""
