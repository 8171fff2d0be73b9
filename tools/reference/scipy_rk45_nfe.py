#!/usr/bin/env python3
"""scipy's RK45 (the same Dormand-Prince 5(4) pair as dualflow's dopri5) on a fixed field: its
function evaluations and endpoint error at three tolerances, and the DOP853 reference solution at
1e-13. tests/train/test_solvers.cpp holds dualflow's dopri5 to these numbers (no more than 5%
more evaluations, no more than twice the error). Needs scipy and numpy (not a dependency of
dualflow or its tests):

  python3 -m venv /tmp/sp && /tmp/sp/bin/pip install scipy numpy && /tmp/sp/bin/python tools/reference/scipy_rk45_nfe.py

The field: van der Pol with mu = 0.5, four starting points integrated together as one state
(as a batch of samples is), t from 0 to 10.
"""
import numpy as np
from scipy.integrate import solve_ivp
# van der Pol, mu = 0.5, four starting points, t in [0, 10]
x0 = np.array([[2.0, 0.0], [0.5, -1.0], [-1.5, 1.0], [0.1, 0.1]])
def f(t, y):
    x = y.reshape(4, 2)
    return np.stack([x[:, 1], -x[:, 0] + 0.5 * (1 - x[:, 0] ** 2) * x[:, 1]], 1).ravel()
ref = solve_ivp(f, (0, 10), x0.ravel(), method="DOP853", rtol=1e-13, atol=1e-13)
for tol in [1e-3, 1e-5, 1e-7]:
    r = solve_ivp(f, (0, 10), x0.ravel(), method="RK45", rtol=tol, atol=tol)
    err = np.abs(r.y[:, -1] - ref.y[:, -1]).max()
    print(f"tol {tol:g}: nfev {r.nfev}, accepted {len(r.t)-1}, max endpoint error {err:.3e}")
print("ref", ", ".join(f"{v:.15g}" for v in ref.y[:, -1]))
