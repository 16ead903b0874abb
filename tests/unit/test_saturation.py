"""The saturation rules: per thread, per process, and late starts only when systematic."""

from harness.measure.saturation import client_bound, emulator_late, merge_max, server_bound


def util(process, thread, cores=2):
    return {"process": process, "busiest_thread": thread, "cores": cores}


def test_one_busy_thread_binds_a_process():
    assert "busiest thread used 95%" in server_bound({"python[1]": util(0.95, 0.95)})


def test_a_spread_process_binds_only_near_all_its_cores():
    assert server_bound({"caddy[2]": util(1.2, 0.4)}) == ""
    assert "used 1.80 of its 2 cores" in server_bound({"caddy[2]": util(1.8, 0.5)})


def test_each_process_of_a_server_is_judged_alone():
    reason = server_bound({"python[1]": util(0.5, 0.5), "caddy[2]": util(0.9, 0.88)})
    assert reason.startswith("caddy[2]")


def test_one_late_start_in_sixty_at_low_cpu_is_not_client_bound():
    assert client_bound(0.04, 1, 60) == ""
    assert client_bound(0.04, 2, 10) == ""           # under the minimum count


def test_systematic_late_starts_or_a_busy_worker_are_client_bound():
    assert "5 of 60 requests started late" in client_bound(0.1, 5, 60)
    assert "used 90% of a core" in client_bound(0.9, 0, 60)


def test_merge_keeps_the_repeat_nearest_saturation():
    into = {"p": util(0.5, 0.5)}
    merge_max(into, {"p": util(0.7, 0.6), "q": util(0.1, 0.1)})
    assert into["p"]["process"] == 0.7 and "q" in into


def test_the_machine_binds_when_client_and_server_together_fill_its_cores():
    from harness.measure.saturation import machine_bound
    assert machine_bound(1.65, cores=2) == ""                  # 82%: room left
    assert "together used 1.72 of the machine's 2 cores" in machine_bound(1.72, cores=2)


def test_a_row_adds_its_clients_to_each_repeats_servers():
    """Per repeat: the clients' CPU over their wall time plus the server processes' cores;
    the row keeps the repeat nearest saturation and flags it past the rule. No server
    sample (servers started elsewhere, `remote:`): no machine figure, no flag."""
    from harness.measure.recorder import Recorder
    from harness.measure.results import PointKey, PointResult
    from harness.measure.saturation import MACHINE_CORES

    def result() -> PointResult:
        return PointResult(key=PointKey("rest-h1", "closed", 8, None))

    cores = MACHINE_CORES
    res = result()
    res.add_server_util({"caddy[1]": util(0.25 * cores, 0.3), "python[2]": util(0.25 * cores, 0.6)})
    res.add_repeat(Recorder(), 2.0, 0.2 * cores * 2.0, None, 0.2)   # clients: 20% of it
    assert abs(res.machine_cores_used - 0.7 * cores) < 1e-9
    assert res.row("embed")["machine_bound"] == ""
    res.add_server_util({"caddy[1]": util(0.6 * cores, 0.3), "python[2]": util(0.1, 0.1)})
    res.add_repeat(Recorder(), 2.0, 0.3 * cores * 2.0, None, 0.3)   # 30%: the busier repeat
    assert abs(res.machine_cores_used - (0.9 * cores + 0.1)) < 1e-9
    row = res.row("embed")
    assert f"of the machine's {cores} cores" in row["machine_bound"]
    assert row["machine_cores_used"] == round(0.9 * cores + 0.1, 3)
    remote = result()
    remote.add_server_util({})
    remote.add_repeat(Recorder(), 2.0, 4.0, None, 1.0)
    assert remote.machine_cores_used is None and remote.row("embed")["machine_bound"] == ""


def test_two_late_packets_in_169_do_not_flag_a_lab_point():
    # dns.yaml's ws row: 2 of 169 packets up to 0.61 ms late on a 154 ms p50.
    assert not emulator_late(2, 169)
    assert emulator_late(3, 169) and emulator_late(30, 1000)
    assert not emulator_late(9, 1000)       # under 1% of the packets


PROC_STAT = """cpu  500 10 100 2000 5 0 20 70 0 0
cpu0 200 5 50 1000 2 0 10 20 0 0
cpu1 300 5 50 1000 3 0 10 50 40 0
intr 12345 0 0
"""


def test_steal_is_read_per_cpu_with_guest_time_counted_once():
    from harness.measure.cpu import parse_host_ticks
    # cpu1's guest column (40) is already inside its user time: the total is 8 columns.
    assert parse_host_ticks(PROC_STAT, {1}) == (50, 1418)
    assert parse_host_ticks(PROC_STAT, {0, 1}) == (70, 2705)
    assert parse_host_ticks(PROC_STAT, {7}) is None          # a CPU the file does not list
    assert parse_host_ticks("cpu0 1 2 3 4\n", {0}) is None     # a kernel without steal


def test_the_hypervisor_s_share_of_a_window():
    from harness.measure.cpu import steal_share
    assert steal_share((70, 2705), (130, 3705)) == 0.06
    assert steal_share(None, (130, 3705)) is None
    assert steal_share((70, 2705), (70, 2705)) is None        # no tick between them


def test_a_point_is_host_noisy_from_five_percent_steal_and_keeps_its_worst_repeat():
    from harness.measure.recorder import Recorder
    from harness.measure.results import PointKey, PointResult
    from harness.measure.saturation import STEAL_NOISY, Snapshot, host_noisy

    assert STEAL_NOISY == 0.05
    assert host_noisy(0.049) == "" and host_noisy(None) == ""
    assert host_noisy(0.3).startswith("steal: the hypervisor took 30% of this machine's CPU")
    res = PointResult(key=PointKey("rest-h1", "closed", 1, None))
    for before, after in (((0, 1000), (10, 2000)), ((10, 2000), (310, 3000)),
                          ((310, 3000), (320, 4000))):      # 1%, then 30%, then 1%
        res.add_window(Snapshot({}, before), Snapshot({}, after), 1.0)
        res.add_repeat(Recorder(), 1.0, 0.1, None, 0.1)
    row = res.row("embed")
    assert row["host_steal"] == 0.3 and "30%" in row["host_noisy"]
    quiet = PointResult(key=PointKey("rest-h1", "closed", 1, None))
    quiet.add_window(Snapshot({}, (0, 1000)), Snapshot({}, (10, 2000)), 1.0)
    assert quiet.row("embed")["host_noisy"] == "" and quiet.row("embed")["host_steal"] == 0.01
    unknown = PointResult(key=PointKey("rest-h1", "closed", 1, None))
    unknown.add_window(Snapshot({}, None), Snapshot({}, None), 1.0)
    assert unknown.row("embed")["host_steal"] is None
