"""Verification of nodes against their site: a testinfra suite, its runner and output parsers."""
