"""Building, converting and exporting models (needs torch; never imported by the API)."""
