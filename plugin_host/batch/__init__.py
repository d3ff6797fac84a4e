"""The batch runner's engine: input discovery, plans, name templates, journal, pipelines, execution and Ray."""
