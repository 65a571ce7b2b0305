"""BentoML services: each project's pinned `@champion` behind a typed HTTP API."""
