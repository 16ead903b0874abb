"""Markdown table cells and tables, shared by the report and its sections."""

from __future__ import annotations

from typing import Any, Callable


SIGNIFICANT = 4     # the histograms hold 3 significant digits: one more is plenty


def fmt(v: Any, digits: int = 3) -> str:
    """A table cell: '-' for no value, thousands separators, at most `digits` decimals
    and no more than SIGNIFICANT digits in all (2,041.855 ms reads 2,042: its
    histogram bucket there is about a millisecond wide)."""
    if v is None:
        return "-"
    if isinstance(v, float):
        whole = len(str(int(abs(v)))) if abs(v) >= 1 else 0
        return f"{v:,.{max(0, min(digits, SIGNIFICANT - whole))}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def rate_figure(rate: float | None) -> str:
    """A rate in req/s: whole from 100 up (1337.48 reads "1,337"), three significant
    digits below (a pipeline's 0.4 req/s is not "0")."""
    if rate is None:
        return "-"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def rate_text(rate: float) -> str:
    """An offered rate as a load label: "1,337/s"."""
    return rate_figure(rate) + "/s"


def point_load(r: dict[str, Any]) -> str:
    """A row's load alone: its users (closed loop) or its offered rate."""
    return f"c={r['concurrency']}" if r["mode"] == "closed" else rate_text(r["rate_offered_rps"])


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def load_label(r: dict[str, Any]) -> str:
    """A row's load point, with its swept connection count and link when it has them."""
    load = point_load(r)
    if r.get("connections_policy"):
        load += f" conn={r['connections_policy']}"
    if r.get("tls_version"):
        load += f" tls{r['tls_version']}"
    if r.get("dns_cache") is not None:
        load += " dns-cache" if r["dns_cache"] else " no-dns-cache"
    if r.get("resumption"):
        load += f" resume={r['resumption']}"
    if r.get("link"):
        load += f" [{r['network']}]"
    return load


def swept_label(rows: list[dict[str, Any]]) -> Callable[[dict[str, Any]], str]:
    """load_label as these rows' table groups them: a TLS version or DNS step that every
    row shares is not a load point of its own (protocols without TLS aside), so it is
    left out, to be said once where the table is titled."""
    one_tls = len({r.get("tls_version") for r in rows if r.get("tls_version")}) <= 1
    one_dns = len({r.get("dns_cache") for r in rows}) == 1

    def label(r: dict[str, Any]) -> str:
        return load_label({**r, "tls_version": None if one_tls else r.get("tls_version"),
                           "dns_cache": None if one_dns else r.get("dns_cache")})
    return label


def fastest_first(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Rows in the order that answers "who is fastest here": per load point, by `metric`
    (latency p50 for requests, TTFT p50 for streams). A TLS version every TLS row shares
    does not split a load point: HTTP/2 at c=1 ranks beside HTTP/1.1 at c=1."""
    label = swept_label(rows)

    def key(r: dict[str, Any]) -> tuple:
        load = r["concurrency"] if r["mode"] == "closed" else r.get("rate_offered_rps") or 0
        value = r.get(metric)
        return (r["mode"], load or 0, label(r), value is None, value or 0.0)
    return sorted(rows, key=key)
