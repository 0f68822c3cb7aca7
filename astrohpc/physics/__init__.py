"""Physics on de-normalised fields in SI units, with the planet's constants passed in.

    constants.py    PlanetConstants: radius, gravity, R, cp (floats, or one per sample)
    grid.py         area weights and σ interfaces (SphereGrid), global means
    state.py        reading named fields of a state in float64
    mass.py         layer and column dry-air mass, global dry mass
    hydrostatic.py  hydrostatic geopotential (Simmons-Burridge) and its residual on zg
    gas.py          ideal-gas consistency of T, p and the hydrostatic density
    humidity.py     negative water
    energy.py       column energy, TOA balance, the energy budget residual of a step (W m-2)
    losses.py       the weighted, differentiable physics loss terms
    correctors.py   float64 hard correctors: humidity, dry mass, energy
    insolation.py   TOA incoming shortwave from the orbit, rotation and time (the emulator's forcing)
    emission.py     grey two-stream thermal emission spectrum
"""
