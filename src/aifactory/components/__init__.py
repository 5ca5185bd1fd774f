"""Pulumi ComponentResources, one per concern of a site, each with typed args."""
