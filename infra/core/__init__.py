"""The core: the topology model and its validation, rendering and the plan, pure data
and the files they are made of (certificates, connection files, secrets)."""
