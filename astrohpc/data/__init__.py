"""GCM NetCDF -> HDF5 datacubes, and reading them back in parallel (schema: docs/datacube.md).

    schema.py         names, chunk layout, version, CF attributes of the cube
    settings.py       the `data:` config section
    sources.py        one NetCDF file -> oriented channels (ExoPlaSim, CAM hybrid, generic CF)
    derived.py        variables computed at conversion (TOA incoming shortwave, hydrostatic zg)
    timeaxis.py       source times -> days since the run's start
    netcdf_classic.py truncation check for classic NetCDF files
    vertical.py       sigma / hybrid / pressure levels, interpolation linear in log p
    grid.py           orientation (south->north, 0-360), latitude bounds, area weights
    validate.py       NaN/inf, grids, channels, cube structure
    convert.py        runs -> one cube, written atomically (`convert`, `convert_run_dirs`)
    cube.py           opening a cube: independent (per process) or collective (MPI-IO)
    dataset.py        torch Dataset of windows (the emulator's samples), a selection of runs, sharding
    runs.py           torch Dataset of whole runs: time means and first days (the climate surrogate's)
    match.py          another cube matched to a model's layout: channels by name and units, grid, parameters
    stats.py          per-channel statistics (area-weighted, per run), Chan merge across MPI ranks, sidecar
    spectra.py        thermal emission spectrum of every state, in a sidecar (the spectral head's target)
    bench.py          read benchmark: sequential bytes, preadv, netCDF4, xarray, mpirun, DataLoader

Nothing heavy is imported here: `import astrohpc.data` stays cheap for the config loader.
"""
