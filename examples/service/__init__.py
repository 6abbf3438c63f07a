"""An example Starlette service embedding milo-kernel (errors + metrics) through the lifespan helper."""
