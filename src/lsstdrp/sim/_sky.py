"""The simulated sky: stars, galaxies, variables, transients, solar-system objects.

Everything here is truth: positions at the reference epoch, physical parameters and
light curves, from which every visit is observed by the truth chain in ``_survey``.
"""

from __future__ import annotations

import numpy as np
from astropy.table import QTable

__all__ = [
    "make_sky",
    "light_curve_mag_offset",
    "sso_positions",
    "GM_SUN_AU3_DAY2",
]

#: Gaussian gravitational constant squared: GM_sun in AU^3 / day^2.
GM_SUN_AU3_DAY2 = 2.959122082855911e-4
_OBLIQUITY_RAD = np.deg2rad(23.43928)  # J2000 mean obliquity (IAU 2006, to 1e-5 deg)

KIND_STAR = "star"
KIND_GALAXY = "galaxy"
KIND_INJECTED = "injected"
KIND_TRANSIENT = "transient"


def _uniform_on_cap(n: int, ra0: float, dec0: float, half_width_deg: float, rng: np.random.Generator):
    """Uniform positions in a square tangent-plane patch of half-width ``half_width_deg``."""
    xi = np.deg2rad(rng.uniform(-half_width_deg, half_width_deg, n))
    eta = np.deg2rad(rng.uniform(-half_width_deg, half_width_deg, n))
    return _tangent_to_sky(xi, eta, ra0, dec0)


def _tangent_to_sky(xi, eta, ra0, dec0):
    """Gnomonic deprojection of standard coordinates (radians) about (ra0, dec0) in deg."""
    a0, d0 = np.deg2rad(ra0), np.deg2rad(dec0)
    denom = np.cos(d0) - eta * np.sin(d0)
    ra = a0 + np.arctan2(xi, denom)
    dec = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, denom))
    return np.rad2deg(ra) % 360.0, np.rad2deg(dec)


def _powerlaw_mags(n: int, lo: float, hi: float, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitudes with dN/dm ∝ 10^(slope m) between lo and hi (inverse-CDF sampling)."""
    u = rng.uniform(size=n)
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + u * (b - a)) / slope


def make_sky(cfg, half_width_deg: float, rng: np.random.Generator, *, encounter_mjds=None,
             sso_radius_deg: float | None = None) -> tuple[QTable, QTable]:
    """Draw the truth sky for a survey.

    Parameters
    ----------
    cfg : SurveyConfig
        The survey configuration (densities, magnitude ranges, epochs, shear ...).
    half_width_deg : float
        Half-width of the square sky patch to populate (covers all dithers).
    rng : numpy.random.Generator
        Random generator.
    encounter_mjds : array_like, optional
        Epochs (e.g. the visits' MJDs) at which solar-system objects are placed in the
        field: each SSO crosses the field at one of them, drawn at random; default a
        uniform epoch in the survey span.
    sso_radius_deg : float, optional
        Radius around the field centre where SSOs are placed at their encounter
        (default 0.6 x ``half_width_deg``).

    Returns
    -------
    objects : astropy.table.QTable
        One row per static or variable object (stars, galaxies, injected sources,
        transients): ``id, kind, ra, dec`` (deg, at ``cfg.refcat_epoch``), ``pmra,
        pmdec`` (mas/yr, pmra includes cos dec), ``parallax`` (mas), ``mag_r``
        (standard r-band AB), ``temperature`` (K) and ``tilt`` (SED parameters),
        galaxy structure (``bulge_frac, bulge_hlr, disk_hlr`` arcsec, ``disk_e1,
        disk_e2`` distortion, ``bulge_e1, bulge_e2``), variability (``var_amp`` mag,
        ``var_period`` d, ``var_phase``; transients ``t_peak``, ``t_rise``, ``t_decay``),
        ``is_bright`` (saturating star).
    sso : astropy.table.QTable
        Solar-system objects: ``id, epoch`` (MJD), heliocentric ecliptic state
        ``x, y, z`` (AU) and ``vx, vy, vz`` (AU/day) at ``epoch``, absolute-like
        magnitude ``mag_r_at_epoch`` (r-band AB at the encounter).
    """
    area_arcmin2 = (2 * half_width_deg * 60.0) ** 2
    n_star = int(rng.poisson(cfg.star_density_arcmin2 * area_arcmin2))
    n_gal = int(rng.poisson(cfg.galaxy_density_arcmin2 * area_arcmin2))
    n_bright = cfg.n_bright_stars
    rows: dict[str, list] = {}

    def add(kind, ra, dec, mag, temp, *, tilt=None, pm=None, plx=None, gal=None, var=None, trans=None, bright=None):
        n = len(ra)
        if n == 0:
            return
        z = np.zeros(n)
        cols = {
            "kind": np.full(n, kind, dtype="U9"),
            "ra": ra, "dec": dec, "mag_r": mag, "temperature": temp,
            "tilt": z if tilt is None else tilt,
            "pmra": z if pm is None else pm[0], "pmdec": z if pm is None else pm[1],
            "parallax": z if plx is None else plx,
            "bulge_frac": z if gal is None else gal["bulge_frac"],
            "bulge_hlr": z if gal is None else gal["bulge_hlr"],
            "disk_hlr": z if gal is None else gal["disk_hlr"],
            "disk_e1": z if gal is None else gal["disk_e1"],
            "disk_e2": z if gal is None else gal["disk_e2"],
            "bulge_e1": z if gal is None else gal["bulge_e1"],
            "bulge_e2": z if gal is None else gal["bulge_e2"],
            "var_amp": z if var is None else var[0],
            "var_period": np.ones(n) if var is None else var[1],
            "var_phase": z if var is None else var[2],
            "t_peak": np.full(n, np.nan) if trans is None else trans[0],
            "t_rise": np.ones(n) if trans is None else trans[1],
            "t_decay": np.ones(n) if trans is None else trans[2],
            "is_bright": np.zeros(n, bool) if bright is None else bright,
        }
        for k, v in cols.items():
            rows.setdefault(k, []).append(np.asarray(v))

    # --- stars: power-law counts, temperatures 3300-11000 K, disk-like kinematics
    def star_block(n, mag, bright):
        ra, dec = _uniform_on_cap(n, cfg.ra0, cfg.dec0, half_width_deg, rng)
        temp = np.exp(rng.uniform(np.log(3300.0), np.log(11000.0), n))
        dist_pc = np.exp(rng.uniform(np.log(200.0), np.log(8000.0), n))
        plx = 1000.0 / dist_pc
        vt = rng.normal(0.0, 40.0, (2, n))  # km/s tangential
        pm = vt / (4.74047 * dist_pc / 1000.0)  # mas/yr
        var = None
        if cfg.variable_fraction > 0:
            isvar = rng.uniform(size=n) < cfg.variable_fraction
            amp = np.where(isvar, rng.uniform(0.05, 0.5, n), 0.0)
            var = (amp, np.exp(rng.uniform(np.log(0.2), np.log(10.0), n)), rng.uniform(0, 1, n))
        add(KIND_STAR, ra, dec, mag, temp, pm=pm, plx=plx, var=var, bright=np.full(n, bright))

    star_block(n_star, _powerlaw_mags(n_star, *cfg.star_mag_range, 0.3, rng), False)
    if n_bright:
        star_block(n_bright, rng.uniform(11.0, 13.0, n_bright), True)

    # --- galaxies: bulge + disk, sizes shrinking with magnitude, Rayleigh ellipticities
    if n_gal:
        ra, dec = _uniform_on_cap(n_gal, cfg.ra0, cfg.dec0, half_width_deg, rng)
        mag = _powerlaw_mags(n_gal, *cfg.galaxy_mag_range, 0.35, rng)
        disk_hlr = np.exp(rng.normal(np.log(1.2 * 10 ** (-0.1 * (mag - 20.0))), 0.35))
        disk_hlr = np.clip(disk_hlr, 0.15, 4.0)
        bulge_hlr = np.clip(disk_hlr * rng.uniform(0.2, 0.6, n_gal), 0.08, 2.0)

        def ell(sig, n):
            e = np.clip(np.abs(rng.normal(0, sig, n)) * np.sqrt(2), 0, 0.8)
            th = rng.uniform(0, np.pi, n)
            return e * np.cos(2 * th), e * np.sin(2 * th)

        de1, de2 = ell(0.3, n_gal)
        be1, be2 = ell(0.1, n_gal)
        gal = {"bulge_frac": rng.uniform(0.0, 0.7, n_gal), "bulge_hlr": bulge_hlr, "disk_hlr": disk_hlr,
               "disk_e1": de1, "disk_e2": de2, "bulge_e1": be1, "bulge_e2": be2}
        temp = np.exp(rng.uniform(np.log(3500.0), np.log(9000.0), n_gal))
        add(KIND_GALAXY, ra, dec, mag, temp, tilt=rng.uniform(-1.0, 1.0, n_gal), gal=gal)

    # --- injected grid of faint point sources (fixed SED, no motion)
    if cfg.injection_spacing_arcsec > 0:
        step = cfg.injection_spacing_arcsec / 3600.0
        g = np.arange(-half_width_deg + step / 2, half_width_deg, step)
        xi, eta = np.meshgrid(np.deg2rad(g), np.deg2rad(g))
        ra, dec = _tangent_to_sky(xi.ravel(), eta.ravel(), cfg.ra0, cfg.dec0)
        add(KIND_INJECTED, ra, dec, np.full(ra.size, cfg.injection_mag), np.full(ra.size, 5800.0))

    # --- transients: a Gaussian rise then an exponential decay around t_peak
    if cfg.n_transients:
        n = cfg.n_transients
        ra, dec = _uniform_on_cap(n, cfg.ra0, cfg.dec0, half_width_deg * 0.8, rng)
        t_peak = cfg.mjd_start + rng.uniform(0.0, max(cfg.mjd_span_days, 1e-3), n)
        add(KIND_TRANSIENT, ra, dec, rng.uniform(19.0, 21.5, n), np.exp(rng.uniform(np.log(5000), np.log(15000), n)),
            trans=(t_peak, rng.uniform(1.0, 5.0, n), rng.uniform(5.0, 30.0, n)))

    cols = {k: np.concatenate(v) for k, v in rows.items()}
    n_obj = len(cols["ra"])
    objects = QTable()
    objects["id"] = np.arange(1, n_obj + 1, dtype=np.int64)
    for k, v in cols.items():
        objects[k] = v
    objects.meta["epoch_mjd"] = cfg.refcat_epoch
    sso = _make_sso(cfg, half_width_deg if sso_radius_deg is None else sso_radius_deg / 0.6, rng,
                    first_id=n_obj + 1, encounter_mjds=encounter_mjds)
    return objects, sso


def light_curve_mag_offset(objects: QTable, mjd: float) -> np.ndarray:
    """Magnitude offset of every object at ``mjd`` (0 for constant objects; +inf = invisible).

    Variables: :math:`\\Delta m = A \\sin(2\\pi (t/P + \\phi))`. Transients: flux
    :math:`\\propto e^{-(t-t_p)^2/2\\tau_r^2}` before the peak and
    :math:`e^{-(t-t_p)/\\tau_d}` after.

    Parameters
    ----------
    objects : QTable
        The truth objects (from :func:`make_sky`).
    mjd : float
        Epoch (MJD, TAI).

    Returns
    -------
    numpy.ndarray
        Magnitude offsets (add to the catalog magnitudes).
    """
    dm = np.asarray(objects["var_amp"]) * np.sin(
        2 * np.pi * (mjd / np.asarray(objects["var_period"]) + np.asarray(objects["var_phase"]))
    )
    tp = np.asarray(objects["t_peak"], dtype=float)
    is_tr = np.isfinite(tp)
    if is_tr.any():
        dt = mjd - tp[is_tr]
        rel = np.where(dt < 0, np.exp(-0.5 * (dt / np.asarray(objects["t_rise"])[is_tr]) ** 2),
                       np.exp(-dt / np.asarray(objects["t_decay"])[is_tr]))
        with np.errstate(divide="ignore"):
            dm[is_tr] = np.where(rel > 1e-6, -2.5 * np.log10(np.maximum(rel, 1e-300)), np.inf)
    return dm


# ---------------------------------------------------------------------------- SSO
def _earth_helio_ecliptic(mjd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heliocentric ecliptic position (AU) and velocity (AU/day) of the Earth (erfa.epv00)."""
    import erfa

    mjd = np.atleast_1d(np.asarray(mjd, dtype=float))
    pvh, _pvb = erfa.epv00(2400000.5 + 32.184 / 86400.0 + 0.0 * mjd, mjd)  # TAI->TT offset; TDB≈TT
    pos = np.asarray(pvh["p"] if pvh.dtype.names else pvh[..., 0, :])
    vel = np.asarray(pvh["v"] if pvh.dtype.names else pvh[..., 1, :])
    return _equ_to_ecl(pos), _equ_to_ecl(vel)


def _equ_to_ecl(v: np.ndarray) -> np.ndarray:
    c, s = np.cos(_OBLIQUITY_RAD), np.sin(_OBLIQUITY_RAD)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x, c * y + s * z, -s * y + c * z], axis=-1)


def _ecl_to_equ(v: np.ndarray) -> np.ndarray:
    c, s = np.cos(_OBLIQUITY_RAD), np.sin(_OBLIQUITY_RAD)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x, c * y - s * z, s * y + c * z], axis=-1)


def _make_sso(cfg, half_width_deg: float, rng: np.random.Generator, first_id: int,
              encounter_mjds=None) -> QTable:
    """Main-belt-like objects whose orbits pass through the field at a visit-like epoch.

    Each object is placed at a geocentric distance of 1.2-2.5 AU in a random direction
    inside the field at its encounter epoch, with a heliocentric velocity near the local
    circular speed in a direction close to the ecliptic, so its Keplerian orbit crosses
    the field then; its state vector at that epoch defines the orbit exactly.
    """
    n = cfg.n_sso
    t = QTable()
    t["id"] = np.arange(first_id, first_id + n, dtype=np.int64)
    if n == 0:
        for name in ("epoch", "x", "y", "z", "vx", "vy", "vz", "mag_r_at_epoch"):
            t[name] = np.zeros(0)
        return t
    if encounter_mjds is not None and len(encounter_mjds):
        epoch = rng.choice(np.asarray(encounter_mjds, dtype=float), n)
    else:
        epoch = cfg.mjd_start + rng.uniform(0.0, max(cfg.mjd_span_days, 1e-3), n)
    ra, dec = _uniform_on_cap(n, cfg.ra0, cfg.dec0, half_width_deg * 0.6, rng)
    delta = rng.uniform(1.2, 2.5, n)
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    u_equ = np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)
    earth, _ = _earth_helio_ecliptic(epoch)
    pos = earth + delta[:, None] * _equ_to_ecl(u_equ)
    r = np.linalg.norm(pos, axis=1)
    vcirc = np.sqrt(GM_SUN_AU3_DAY2 / r)
    zhat = np.array([0.0, 0.0, 1.0])
    tang = np.cross(zhat, pos)
    tang /= np.linalg.norm(tang, axis=1)[:, None]
    incl = np.deg2rad(rng.normal(0.0, 8.0, n))
    rhat = pos / r[:, None]
    bin_ = np.cross(rhat, tang)
    vdir = np.cos(incl)[:, None] * tang + np.sin(incl)[:, None] * bin_
    vel = (vcirc * rng.uniform(0.9, 1.1, n))[:, None] * vdir
    t["epoch"] = epoch
    for i, c in enumerate("xyz"):
        t[c] = pos[:, i]
        t["v" + c] = vel[:, i]
    t["mag_r_at_epoch"] = rng.uniform(19.0, 21.5, n)
    t["delta_at_epoch"] = delta
    t["r_at_epoch"] = r
    return t


def _stumpff(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.empty_like(z)
    s = np.empty_like(z)
    pos, neg, zero = z > 1e-8, z < -1e-8, np.abs(z) <= 1e-8
    sz = np.sqrt(z[pos])
    c[pos] = (1 - np.cos(sz)) / z[pos]
    s[pos] = (sz - np.sin(sz)) / sz**3
    sz = np.sqrt(-z[neg])
    c[neg] = (np.cosh(sz) - 1) / (-z[neg])
    s[neg] = (np.sinh(sz) - sz) / sz**3
    c[zero] = 0.5 - z[zero] / 24.0
    s[zero] = 1.0 / 6.0 - z[zero] / 120.0
    return c, s


def kepler_propagate(pos: np.ndarray, vel: np.ndarray, dt: np.ndarray, mu: float = GM_SUN_AU3_DAY2):
    """Two-body propagation of state vectors by ``dt`` days (universal variables).

    Solves the universal Kepler equation with Newton's method (Vallado 2013, Alg. 8)
    and applies the Lagrange f, g coefficients; valid for any conic.

    Parameters
    ----------
    pos, vel : numpy.ndarray, shape (n, 3)
        Heliocentric positions (AU) and velocities (AU/day).
    dt : numpy.ndarray, shape (n,)
        Time steps in days.
    mu : float
        Gravitational parameter (AU^3/day^2).

    Returns
    -------
    pos, vel : numpy.ndarray
        The propagated state.
    """
    pos = np.atleast_2d(pos).astype(float)
    vel = np.atleast_2d(vel).astype(float)
    dt = np.broadcast_to(np.asarray(dt, dtype=float), (pos.shape[0],)).copy()
    r0 = np.linalg.norm(pos, axis=1)
    v0 = np.linalg.norm(vel, axis=1)
    vr0 = np.sum(pos * vel, axis=1) / r0
    alpha = 2.0 / r0 - v0**2 / mu
    sq = np.sqrt(mu)
    chi = sq * np.abs(alpha) * dt
    for _ in range(60):
        z = alpha * chi**2
        c, s = _stumpff(z)
        f = r0 * vr0 / sq * chi**2 * c + (1 - alpha * r0) * chi**3 * s + r0 * chi - sq * dt
        df = r0 * vr0 / sq * chi * (1 - alpha * chi**2 * s) + (1 - alpha * r0) * chi**2 * c + r0
        step = f / df
        chi = chi - step
        if np.all(np.abs(step) < 1e-13):
            break
    z = alpha * chi**2
    c, s = _stumpff(z)
    fl = 1 - chi**2 / r0 * c
    gl = dt - chi**3 / sq * s
    new_pos = fl[:, None] * pos + gl[:, None] * vel
    r = np.linalg.norm(new_pos, axis=1)
    fdot = sq / (r * r0) * (alpha * chi**3 * s - chi)
    gdot = 1 - chi**2 / r * c
    new_vel = fdot[:, None] * pos + gdot[:, None] * vel
    return new_pos, new_vel


def sso_positions(sso: QTable, mjd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Astrometric (geocentric, light-time corrected) RA/Dec and r-mag of SSOs at ``mjd``.

    Parameters
    ----------
    sso : QTable
        From :func:`make_sky`.
    mjd : float
        Epoch (MJD, TAI).

    Returns
    -------
    ra, dec : numpy.ndarray
        Degrees (ICRS, geocentric; topocentric parallax and aberration are neglected —
        the simulated WCS is defined in this frame).
    mag_r : numpy.ndarray
        r-band magnitude, scaled from the encounter epoch by
        :math:`5\\log_{10}(r\\Delta / r_0\\Delta_0)` (no phase function).
    """
    n = len(sso)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    pos0 = np.stack([np.asarray(sso[c], float) for c in "xyz"], axis=1)
    vel0 = np.stack([np.asarray(sso["v" + c], float) for c in "xyz"], axis=1)
    epoch = np.asarray(sso["epoch"], float)
    earth, _ = _earth_helio_ecliptic(np.full(n, mjd))
    tau = np.zeros(n)
    for _ in range(3):  # light-time iteration
        p, _v = kepler_propagate(pos0, vel0, mjd - tau - epoch)
        geo = p - earth
        tau = np.linalg.norm(geo, axis=1) / 173.1446326846693  # AU per day at c
    geo_equ = _ecl_to_equ(geo)
    dist = np.linalg.norm(geo_equ, axis=1)
    ra = np.rad2deg(np.arctan2(geo_equ[:, 1], geo_equ[:, 0])) % 360.0
    dec = np.rad2deg(np.arcsin(geo_equ[:, 2] / dist))
    r = np.linalg.norm(p, axis=1)
    mag = np.asarray(sso["mag_r_at_epoch"], float) + 5 * np.log10(
        r * dist / (np.asarray(sso["r_at_epoch"], float) * np.asarray(sso["delta_at_epoch"], float))
    )
    return ra, dec, mag
