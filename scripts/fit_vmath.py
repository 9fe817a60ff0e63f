#!/usr/bin/python3
"""Derives the polynomial coefficients of the CPU backend's float32 math.

backends/cpu/vmath.h evaluates exp, erf/erfc (and GELU through erfc) and tanh
in float32 with polynomials whose coefficients this script fits: weighted
least squares (relative error) on a dense grid, with Python's double-precision
math library as the reference. Run it to reproduce or re-derive the tables:

    /usr/bin/python3 scripts/fit_vmath.py

It prints each polynomial (highest degree first, as float32 literals) and its
fit error in float64. The float32 error of the functions as evaluated (all
float32 inputs) is measured by bench/vmath_accuracy.cpp; the bounds are in
docs/RUN.md.
"""

import math

import numpy as np

ULP1 = 2.0**-23  # the spacing of float32 numbers in [1, 2)


def fit(name, x, y, degree, note):
    coefficients = np.polyfit(x, y, degree, w=1.0 / np.abs(y))
    error = np.max(np.abs(np.polyval(coefficients, x) / y - 1.0))
    print(f"// {name}: {note}; degree {degree}, fit error {error:.2e} ({error / ULP1:.3f} ulp at 1)")
    print("  " + ", ".join(f"{np.float32(c).item()!r}f" for c in coefficients))
    return coefficients


def main():
    # e^r = 1 + r + r^2 P(r) for |r| <= ln2/2 (the reduced argument), with a margin.
    r = np.linspace(-0.3466, 0.3466, 200001)
    r = r[np.abs(r) > 1e-4]
    fit("exp", r, (np.expm1(r) - r) / (r * r), 5, "P(r) = (e^r - 1 - r) / r^2, |r| <= ln2/2")

    # erf(y) = y P(y^2) for 0 <= y <= 0.5.
    y = np.linspace(1e-6, 0.5, 200001)
    fit("erf", y * y, np.array([math.erf(v) for v in y]) / y, 5, "P(s) = erf(y) / y, s = y^2, y <= 0.5")

    # erfc(y) e^(y^2) = Q(y) for 0.5 <= y <= 2, in powers of y - 1.25.
    y = np.linspace(0.5, 2.0, 200001)
    q = np.array([math.erfc(v) * math.exp(v * v) for v in y])
    fit("erfc_near", y - 1.25, q, 10, "Q(y) = erfc(y) e^(y^2), 0.5 <= y <= 2, in y - 1.25")

    # erfc(y) e^(y^2) y = R(1/y^2) for 2 <= y <= 10.1 (erfc is below the float32 range beyond).
    y = np.linspace(2.0, 10.1, 200001)
    q = np.array([math.erfc(v) * math.exp(v * v) * v for v in y])
    fit("erfc_far", 1.0 / (y * y), q, 8, "R(u) = erfc(y) e^(y^2) y, u = 1/y^2, 2 <= y <= 10.1")

    # tanh(x) = x + x s P(s), s = x^2, for |x| <= 0.55.
    x = np.linspace(1e-4, 0.55, 200001)
    fit("tanh", x * x, (np.tanh(x) - x) / (x * x * x), 5, "P(s) = (tanh(x) - x) / x^3, s = x^2, |x| <= 0.55")


if __name__ == "__main__":
    main()
