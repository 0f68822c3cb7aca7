"""Physics on de-normalised fields in SI units, with the planet's constants passed in."""
