"""Administration over HTTP (issue 10): what the CLI does, behind an admin token, described by OpenAPI."""
