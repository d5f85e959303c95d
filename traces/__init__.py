"""acsim package."""
