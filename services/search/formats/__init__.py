"""Readers of museum export formats (Dublin Core, LIDO, IIIF, CSV with a column mapping) into `Loaded` records."""
