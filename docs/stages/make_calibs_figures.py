"""Make the figures of docs/stages/calibs.rst (PTC and brighter-fatter kernel).

Run ``python docs/stages/make_calibs_figures.py``; writes ``calibs_ptc.png`` and
``calibs_bf_kernel.png`` next to this script (a simulated 4-amp detector, ~1 min).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lsstdrp.core import make_detector_geometry  # noqa: E402
from lsstdrp.isr.calibs import measure_ptc, solve_bf_kernel  # noqa: E402
from lsstdrp.sim import RawEffects, make_calibration_exposures, make_sensor_truth  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    geom = make_detector_geometry(2, 2, assembled_shape=(512, 512), prescan=3, serial_overscan=32, parallel_overscan=12)
    fx = RawEffects()
    sensor = make_sensor_truth(geom, effects=fx, rng=1)
    sim = make_calibration_exposures(geom, sensor, kind="flat_pair", n=16, rng=2, effects=fx)
    pairs = [(sim.raws[i], sim.raws[j]) for i, j in sim.truth["pairs"]]
    ptc = measure_ptc(pairs, calibs=sensor.calibs, model="instantaneous")
    fig = ptc.plot()
    fig.suptitle("simulated 4-amp detector, 16 flat pairs: gain error "
                 f"{100 * np.max(np.abs(ptc.gain / geom.gains - 1)):.2f}% (max over amps)", fontsize=9)
    fig.savefig(HERE / "calibs_ptc.png", dpi=110)
    plt.close(fig)
    k = solve_bf_kernel(ptc, kernel_radius=8)
    fig = k.plot()
    kt = np.asarray(sensor.calibs.bf_kernel)
    rho = np.corrcoef(k.kernel.ravel(), kt.ravel())[0, 1]
    fig.suptitle(f"brighter-fatter kernel from the PTC: correlation with the simulated kernel {rho:.4f}", fontsize=9)
    fig.savefig(HERE / "calibs_bf_kernel.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
