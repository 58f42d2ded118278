"""The words of a Hessian report, written once for the terminal, Markdown, HTML and the plots.

- :func:`eigen_title`: which end the eigenvalues come from ("Top eigenvalues (5)", "Smallest
  eigenvalues (5)", "Top (5) and smallest (5) eigenvalues").
- :func:`eigen_rows`: the eigenvalues numbered from the asked end (``smallest``: 1 is the most
  negative), ``largest``/``smallest`` rows for ``both``.
- :func:`condition_text`: the condition number, or why there is none (only converged extreme
  pairs of ``which=both`` with ``lambda_min > 0`` define it).
- :func:`outlier_lists` / :func:`outlier_text`: the SLQ outliers at both ends with one count,
  the length of the two lists (as ``n_outliers`` in the JSON).
"""

from __future__ import annotations

from typing import Any

from spectracli.report.numbers import fmt_num


def _which(report: dict[str, Any]) -> str:
    return (report.get("settings") or {}).get("which") or "largest"


def eigen_title(report: dict[str, Any]) -> str:
    """The eigenvalue table's title, naming the end(s) of the spectrum and the count per end."""
    n = len(report.get("eigenvalues") or [])
    which = _which(report)
    if which == "smallest":
        return f"Smallest eigenvalues ({n})"
    if which == "both":
        top = (n + 1) // 2
        return f"Top ({top}) and smallest ({n - top}) eigenvalues"
    return f"Top eigenvalues ({n})"


def end_order(n: int, which: str) -> list[tuple[str, int, int]]:
    """The display order of ``n`` descending eigenvalues by the asked end of the spectrum.

    Returns:
        ``(end, rank, index)`` triples: ``end`` is ``largest`` or ``smallest``, ``rank``
        counts from 1 at that end (largest #1 is the largest value, smallest #1 the smallest,
        i.e. the most negative), ``index`` points into the descending list (JSON
        ``eigenvalues``, which holds the top half then the bottom half for ``which="both"``,
        as :func:`eigen_title` counts them).
    """
    if which == "smallest":
        return [("smallest", r + 1, n - 1 - r) for r in range(n)]
    if which == "both":
        top = (n + 1) // 2
        return ([("largest", r + 1, r) for r in range(top)]
                + [("smallest", r + 1, n - 1 - r) for r in range(n - top)])
    return [("largest", r + 1, r) for r in range(n)]


def by_end(values: list[float], which: str) -> tuple[list[float], list[float]]:
    """Descending ``values`` split by the asked end.

    Returns:
        ``(largest, smallest)``: the largest descending and the smallest ascending (each list
        starts at its end of the spectrum; the end not asked for is empty).
    """
    largest: list[float] = []
    smallest: list[float] = []
    for end, _, i in end_order(len(values), which):
        (largest if end == "largest" else smallest).append(values[i])
    return largest, smallest


def eigen_rows(report: dict[str, Any]) -> list[tuple[str, float, Any, Any]]:
    """The eigenvalue table's rows, numbered from the asked end.

    Returns:
        ``(label, eigenvalue, residual, converged)`` rows: labels ``1, 2, ...`` from that end
        (``smallest``: 1 is the most negative), or ``largest 1 ...`` then ``smallest 1 ...``
        for ``which=both``.
    """
    eig = report.get("eigenvalues") or []
    res = report.get("residuals") or []
    conv = report.get("converged") or []
    which = _which(report)
    rows = []
    for end, rank, i in end_order(len(eig), which):
        label = f"{end} {rank}" if which == "both" else str(rank)
        rows.append((label, eig[i], res[i] if i < len(res) else None,
                     conv[i] if i < len(conv) else None))
    return rows


def convergence_advice(report: dict[str, Any]) -> str | None:
    """What to change when not every eigenpair converged.

    Returns:
        None when all converged; else the advice naming the cap that stopped the solve: the
        basis (thick restarts at ``max_basis`` vectors lose the slowly converging directions of
        eigenvalues crowded near zero: raising the HVP budget alone does not help) or the HVP
        budget.
    """
    if all(report.get("converged") or [True]):
        return None
    s = report.get("settings") or {}
    tol = s.get("tol") or 0.0
    residuals = [r for r in report.get("residuals") or [] if isinstance(r, (int, float))]
    if report.get("multiplicity_verified") is False and all(r <= tol for r in residuals):
        return ("the residuals meet --tol but the multiplicity check (deflated restarts) did not "
                "finish: raise --max-hvps")
    restarts, basis = s.get("n_restarts") or 0, s.get("max_basis")
    if restarts and basis and basis < (report.get("n_params") or 0):
        return (f"not all eigenpairs converged: the Lanczos basis was restarted {restarts} times "
                f"at its cap of {basis} vectors; raise --max-basis (memory: 8 bytes x "
                "parameters per vector) and --max-hvps, or loosen --tol")
    return (f"not all eigenpairs converged within {report.get('hvp_count')} HVPs: raise "
            "--max-hvps, or loosen --tol")


def condition_text(report: dict[str, Any]) -> str:
    """The condition number ``lambda_max / lambda_min`` as text, or ``n/a`` and the reason."""
    value = report.get("condition_number")
    if value is not None:
        return fmt_num(value, 6)
    reason = report.get("condition_number_reason")
    if reason is None and _which(report) != "both":
        reason = "needs both ends of the spectrum: which=both"
    return f"n/a: {reason}" if reason else "n/a"


def outlier_lists(density: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Outliers above (descending) and below (ascending) the bulk, one per eigenvalue."""
    return list(density.get("outliers") or []), list(density.get("outliers_below") or [])


def outlier_count(density: dict[str, Any]) -> int:
    """The one outlier count: both lists together."""
    above, below = outlier_lists(density)
    return len(above) + len(below)


def outlier_text(density: dict[str, Any]) -> str:
    """E.g. ``5 outliers: 4 above the bulk edge 0.5 (50, 20, 9, 4), 1 below -0.05 (-3)``."""
    above, below = outlier_lists(density)
    total = len(above) + len(below)

    def values(vs: list[float]) -> str:
        return ", ".join(fmt_num(v, 6) for v in vs)

    parts = [f"{len(above)} above the bulk edge {fmt_num(density.get('bulk_edge'), 6)}"
             + (f" ({values(above)})" if above else "")]
    if density.get("bulk_edge_low") is not None or below:
        parts.append(f"{len(below)} below the lower edge {fmt_num(density.get('bulk_edge_low'), 6)}"
                     + (f" ({values(below)})" if below else ""))
    return f"{total} outlier{'s' if total != 1 else ''}: " + ", ".join(parts)
