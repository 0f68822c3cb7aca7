"""Use a trained surrogate: `load_surrogate(path)` and `astrohpc predict CONFIG` (astrohpc.predict.run).

    import astrohpc
    gp = astrohpc.load_surrogate("runs/demo/climate_gp/export/gp.pt")
    climate = gp.predict(params={"rotation_period_days": 3.0, "instellation_W_m2": 1300.0})
    em = astrohpc.load_surrogate("runs/demo/train/export/best.pt")
    states = em.rollout({"cube": "runs/demo/demo/datacube.h5", "run": "task-0003"}, steps=10)
"""

from astrohpc.predict.surrogate import load_surrogate

__all__ = ["load_surrogate"]
