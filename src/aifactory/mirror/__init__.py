"""What a site's in-country mirrors must serve (manifest), and whether they serve it (check)."""
