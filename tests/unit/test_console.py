"""The terminal table: a saturated row carries its flag, and a payload-only byte figure
is marked as such beside the wire figures."""

from rich.console import Console

from harness.report.console import final_table
from harness.report.markdown import latency_table


def row(cell, wire, payload, bound=""):
    return {"cell": cell, "protocol": cell.split("@")[0].split("+")[0], "mode": "closed",
            "concurrency": 1, "rate_offered_rps": None, "network": "loopback", "n": 600,
            "errors": 0, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "overhead_p50_ms": 0.5,
            "throughput_rps": 900.0, "client_cpu_ms_per_req": 0.3,
            "server_cpu_ms_per_req": 0.8, "wire_down_bytes": wire,
            "payload_down_bytes": payload, "server_bound": bound, "client_bound": "",
            "failed": ""}


def render(rows):
    console = Console(width=140, record=True)
    console.print(final_table(rows, False))
    return console.export_text()


def test_payload_only_bytes_are_marked_and_explained():
    text = render([row("rest-h1", 159_852, 154_129), row("rest-h3@caddy+curl", None, 154_129)])
    assert "154,129p" in text and "159,852p" not in text
    assert "p: payload bytes only" in text


def test_saturated_row_is_flagged_and_the_flag_explained():
    text = render([row("rest-h1", 159_852, 154_129, bound="python[1] used 96% of a core")])
    assert "SRV" in text and "never ranked" in text
    assert "p: payload bytes only" not in render([row("rest-h1", 159_852, 154_129)])


def test_machine_bound_row_is_flagged_cpu():
    text = render([{**row("rest-h1@caddy+curl", 160_040, 154_129),
                    "machine_bound": "client and server processes together used 1.80 of "
                                     "the machine's 2 cores"}])
    assert " CPU " in text and "machine saturated" in text


def test_a_link_sweep_gets_one_table_per_link_named_in_its_title():
    from harness.report.console import final_tables
    rows = [{**row("sse-h2", 37_000, 30_000), "link": {"name": "loss"}, "network": net}
            for net in ("loss down.loss=0%", "loss down.loss=1%")]
    tables = final_tables(rows, False)
    assert [t.title.splitlines()[1] for t in tables] == ["on link 'loss down.loss=0%'",
                                                        "on link 'loss down.loss=1%'"]
    console = Console(width=100, record=True)
    for t in tables:
        console.print(t)
    text = console.export_text()
    assert "[loss" not in text                      # not repeated on every row
    assert text.count("every column: report.md") == 1      # the key once, under the last
    assert len(final_tables(rows[:1], False)) == 1


def test_the_progress_line_names_the_link_variant():
    # "[loss down.loss=1%]" is rich markup unless escaped: it vanished from the bar.
    from rich.text import Text

    from harness.report.console import RichProgress
    from harness.scenario.linkspec import LinkSpec
    from harness.scenario.model import PlanPoint
    progress = RichProgress()
    point = PlanPoint(0, "sse-h2", "closed", 8, None, link=LinkSpec(name="loss down.loss=1%"))
    task = progress.start(point, 8)
    shown = Text.from_markup(progress.bar.tasks[task].description).plain
    assert shown == "sse-h2 c=8 [loss down.loss=1%]"


def test_a_single_link_is_named_on_its_rows():
    text = render([{**row("rest-h1", 159_852, 154_129), "link": {"name": "rtt20"},
                    "network": "rtt20"}])
    assert "c=1 [rtt20]" in text


def test_a_long_load_label_wraps_and_the_flag_stays_in_100_columns():
    r = {**row("rest-h2+curl", 2_834, 2_000, bound="server at 97%"), "link": {"name": "rtt50"},
         "network": "rtt50", "connections_policy": "new", "tls_version": "1.2",
         "resumption": "session", "latency_p50_ms": 207.62, "latency_p99_ms": 208.77}
    other = {**r, "cell": "rest-h2", "tls_version": "1.3", "server_bound": ""}
    from harness.report.console import final_tables, print_table
    console = Console(width=100, record=True)
    for t in final_tables([r, other], False):
        print_table(console, t)
    text = console.export_text()
    line = next(x for x in text.splitlines() if "rest-h2+curl" in x)
    assert "207.6 " in line and "208.8~" in line and line.rstrip().endswith("0.30/0.80   SRV")
    assert max(map(len, text.splitlines())) <= 100     # wrapped, not widened


def test_figures_too_wide_for_100_columns_widen_the_table_instead_of_losing_the_flag():
    # genai_pipeline.yaml's rows: seconds-long latencies, MB per request, CPU in ms.
    from harness.report.console import final_tables, print_table
    rows = [{**row(cell, 1_004_187, 900_000, bound="server at 97%"),
             "connections_policy": "new", "dns_cache": dns, "latency_p50_ms": 2_732.03,
             "latency_p99_ms": 2_766.85, "overhead_p50_ms": None, "throughput_rps": 0.4,
             "client_cpu_ms_per_req": 991.55, "server_cpu_ms_per_req": 887.75,
             "machine_bound": "both cores"}
            for cell, dns in (("rest-h3", False), ("rest-h2", True))]
    console = Console(width=100, record=True)
    for t in final_tables(rows, False):
        print_table(console, t)
    text = console.export_text()
    assert text.count("991.5/887.8   SRV CPU") == 2     # 4 significant digits
    assert " 0.4 " in text                       # a pipeline's rate is not "0"
    assert console.width == 100                  # put back after the table


def test_a_dns_step_every_row_shares_is_named_once_in_the_title():
    rows = [{**row(cell, 1_163, 1_000), "dns_cache": False} for cell in ("rest-h1", "ws")]
    text = render(rows)
    assert "DNS step, resolver cache off" in text and "no-dns-cache" not in text
    mixed = render([rows[0], {**rows[1], "dns_cache": True}])
    assert "no-dns-cache" in mixed and " dns-cache" in mixed and "resolver cache" not in mixed


def test_a_bisected_rate_reads_as_whole_requests_per_second():
    from harness.report.tables import load_label, rate_text
    assert [rate_text(x) for x in (1337.48, 149.535, 50.0, 12.5)] == [
        "1,337/s", "150/s", "50/s", "12.5/s"]
    assert load_label({"mode": "open", "rate_offered_rps": 2312.99}) == "2,313/s"


class _Result:
    def row(self, workload):
        return {"latency_p50_ms": 1.234, "throughput_rps": 812.0, "errors": 0, "n": 8}


def test_a_finished_point_leaves_a_line_and_the_run_bar_says_what_is_left():
    # 165 live bars would outgrow a terminal and rich would hide the point under way.
    import io

    from harness.report.console import RichProgress
    from harness.scenario.linkspec import LinkSpec
    from harness.scenario.model import PlanPoint
    out = Console(file=io.StringIO(), width=120, record=True)
    progress = RichProgress(out)
    progress.plan(3, "results/x")
    point = PlanPoint(0, "sse-h2", "closed", 8, None, link=LinkSpec(name="loss down.loss=1%"))
    task = progress.start(point, 8)
    progress.update(task, 8)
    progress.finish(task, _Result())
    progress.point_done()
    assert [t.description for t in progress.bar.tasks] == ["all load points"]
    run = progress.bar.tasks[0]
    assert run.completed == 1 and run.fields["note"].endswith(" left")
    progress.start(point, 8)
    progress.failed(point, "server died\ntraceback")
    assert [t.description for t in progress.bar.tasks] == ["all load points"]
    text = out.export_text()
    assert "sse-h2 c=8 [loss down.loss=1%]" in text and "8/8" in text
    assert "p50 1.234 ms  812 rps" in text and "sse-h2 failed: server died" in text


def test_rows_rank_fastest_first_across_tls_and_plain_protocols_at_one_load():
    # HTTP/2 carries "tls1.3" and HTTP/1.1 nothing: one load point all the same, so the
    # order is by p50 across both (it was every plain row, then every TLS row).
    rows = [{**row("rest-h1", 1, 1), "latency_p50_ms": 2.0},
            {**row("rest-h2", 1, 1), "latency_p50_ms": 1.5, "tls_version": "1.3"},
            {**row("grpc", 1, 1), "latency_p50_ms": 1.0}]
    order = [line.split()[0] for line in render(rows).splitlines()
             if line.strip().startswith(("rest-", "grpc"))]
    assert order == ["grpc", "rest-h2", "rest-h1"]
    tails = {f"latency_{q}_ms": 2.0 for q in ("p90", "p95", "p999", "max")}
    lines = latency_table([{**r, **tails, "late_starts": 0} for r in rows]).splitlines()[2:]
    assert [line.split("|")[1].strip() for line in lines if line.startswith("|")] == [
        "grpc", "rest-h2", "rest-h1"]


def test_figures_carry_no_more_digits_than_the_histograms_hold():
    from harness.report.tables import fmt, rate_figure
    # hol.yaml's streams: 2,041.855 ms, in a histogram bucket about 1 ms wide there.
    assert fmt(2_041.855) == "2,042" and fmt(23.647) == "23.65" and fmt(1.133) == "1.133"
    assert fmt(159_932.0, 0) == "159,932"            # whole digits are never cut
    assert rate_figure(1_337.48) == "1,337" and rate_figure(0.4) == "0.4"


def test_three_flags_stay_on_their_row_and_the_table_widens_for_them():
    # The default run's rest-h3 c=8 row: a flag wrapped onto the line below reads as the
    # next row's.
    from harness.report.console import final_tables, print_table
    rows = [{**row("rest-h1@caddy+curl", 160_047, 160_000), "latency_p50_ms": 2.31},
            {**row("rest-h3", 163_562, 160_000, bound="server at 97%"),
             "client_bound": "client at 96%", "machine_bound": "both cores",
             "latency_p50_ms": 65.6, "throughput_rps": 108.94,
             "client_cpu_ms_per_req": 8.62, "server_cpu_ms_per_req": 8.47}]
    console = Console(width=100, record=True)
    for t in final_tables(rows, False):
        print_table(console, t)
    lines = console.export_text().splitlines()
    h3 = next(i for i, x in enumerate(lines) if x.lstrip().startswith("rest-h3"))
    assert lines[h3].rstrip().endswith("8.62/8.47   SRV CLI CPU")
    assert not lines[h3 + 1].strip()                 # nothing spilled under it


def test_a_repeat_line_shows_that_repeat_s_own_figures():
    import io

    from harness.report.console import RichProgress
    from harness.scenario.model import PlanPoint

    class TwoRepeats:
        def row(self, workload):
            return {"latency_p50_ms": 1.939, "throughput_rps": 512.0, "errors": 3, "n": 400,
                    "latency_p50_per_repeat_ms": [1.876, 2.479],
                    "throughput_per_repeat_rps": [556.6, 470.2]}
    out = Console(file=io.StringIO(), width=60, record=True)    # a log file's 80 or less
    progress = RichProgress(out)
    progress.plan(2, "results/x")
    task = progress.start(PlanPoint(1, "rest-h2", "closed", 1, None), 200)
    progress.finish(task, TwoRepeats())
    sweep = "sweep rest-h2: 1,337 req/s client bound: 509 of 1278 requests started late"
    progress.note(sweep)
    lines = out.export_text().splitlines()
    line = next(x for x in lines if "#2" in x)
    assert line.startswith("rest-h2 c=1 #2")
    assert line.endswith("p50 2.479 ms  470 rps  3 errors over the repeats so far")
    assert sweep in lines                       # a log file's line is not wrapped either


def test_a_widened_table_s_caption_is_not_cropped():
    # capacity.yaml's rows: a flag and an error count widen the table past 100 columns; at
    # the width where every cell showed whole the table still overflowed by one column,
    # and the console cropped the "t" of the caption's "not".
    from collections import Counter

    from harness.report.console import final_tables, print_table
    rows = [{**row("rest-h1@caddy+curl", 26_497, 26_000), "mode": "open",
             "rate_offered_rps": 1337.0, "throughput_rps": 1274.0, "latency_p50_ms": 7.74},
            {**row("grpc", 8_673, 8_000, bound="server at 97%"), "mode": "open",
             "rate_offered_rps": 4000.0, "client_bound": "late", "machine_bound": "both",
             "errors": 23, "latency_p50_ms": 711.7, "latency_p99_ms": 1_269.4}]
    console = Console(width=100, record=True)
    tables = final_tables(rows, False)
    caption = " ".join(str(t.caption) for t in tables if t.caption)
    for t in tables:
        print_table(console, t)
    text = console.export_text()
    shown = Counter(text.split())
    assert all(shown[w] >= n for w, n in Counter(caption.split()).items())


def test_a_row_the_hypervisor_slowed_says_so_and_the_caption_says_why():
    noisy = {**row("rest-h1", 159_852, 154_129), "host_steal": 0.3,
             "host_noisy": "the hypervisor took 30% of this machine's CPU time (steal)"}
    text = render([noisy, row("grpc", 160_000, 154_000)])
    assert "STEAL" in text and "STEAL: the hypervisor took >= 5%" in text
    assert "STEAL" not in render([row("rest-h1", 159_852, 154_129)])


def test_the_progress_line_of_a_point_the_hypervisor_slowed_names_the_steal():
    import io

    from harness.report.console import RichProgress
    from harness.scenario.model import PlanPoint

    class Stolen(_Result):
        def row(self, workload):
            return {**super().row(workload), "host_steal": 0.27, "host_noisy": "27%"}

    out = Console(file=io.StringIO(), width=120, record=True)
    progress = RichProgress(out)
    progress.plan(1, "results/x")
    task = progress.start(PlanPoint(0, "rest-h1", "closed", 1, None), 8)
    progress.finish(task, Stolen())
    assert "p50 1.234 ms  812 rps  host steal 27%" in out.export_text()


def test_report_md_warns_above_everything_and_notes_each_row_the_hypervisor_slowed():
    from harness.report.markdown import host_steal_line, notes
    noisy = {**row("rest-h1", 159_852, 154_129), "host_steal": 0.3,
             "host_noisy": "the hypervisor took 30% of this machine's CPU time (steal)"}
    quiet = {**row("grpc", 160_000, 154_000), "host_steal": 0.01, "host_noisy": ""}
    line = host_steal_line([noisy, quiet])
    assert "up to 30%" in line and "during 1 of 2 points (rest-h1 c=1)" in line
    assert host_steal_line([quiet]) is None
    expected = (f"- rest-h1 c=1: **host-noisy** ({noisy['host_noisy']}): every process ran "
                "slower than its CPU time says, so its latency and rate are inflated by other "
                "guests of the host; rerun before trusting a difference that involves it.")
    assert [n for n in notes([noisy, quiet]) if "**host-noisy**" in n] == [expected]
