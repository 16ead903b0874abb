"""One error tree: every error the tool reports carries its exit code, and the command
line turns any of them into one line on stderr and that code."""

import pytest

from base.errors import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RUN_FAILED, BadInput,
                         Interrupted, RunFailed, WirebenchError)
from harness.cli import main
from harness.netlab.linkemu.control import EmulatorError
from harness.netlab.netns import NetnsUnavailable
from harness.report.compare import CompareError
from harness.netlab.netns import LabUnavailable
from harness.run.watchdog import PointFailed
from harness.scenario import ScenarioError
from servers.launcher import ServerStartError

MAPPED = {ScenarioError: EXIT_BAD_INPUT, CompareError: EXIT_BAD_INPUT,
          LabUnavailable: EXIT_BAD_INPUT, ServerStartError: EXIT_RUN_FAILED,
          NetnsUnavailable: EXIT_RUN_FAILED, EmulatorError: EXIT_RUN_FAILED,
          PointFailed: EXIT_RUN_FAILED, Interrupted: EXIT_INTERRUPTED}


@pytest.mark.parametrize("cls", MAPPED, ids=lambda c: c.__name__)
def test_every_harness_error_carries_its_exit_code(cls):
    assert issubclass(cls, WirebenchError)
    assert cls.exit_code == MAPPED[cls]


@pytest.mark.parametrize("cls", [BadInput, RunFailed, Interrupted, EmulatorError,
                                 NetnsUnavailable, LabUnavailable])
def test_the_command_line_prints_one_line_and_exits_with_the_code(cls, monkeypatch, capsys):
    def boom(argv):
        raise cls("the emulator's TUN device vanished")
    monkeypatch.setattr("harness.cli._main", boom)
    assert main(["scenarios/embedding.yaml"]) == cls.exit_code
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"{cls.label}: the emulator's TUN device vanished"]


def test_a_bad_scenario_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nworkload: {type: embed}\nload: {concurrency: 0}\n")
    assert main([str(bad)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bad input: {bad}: load.concurrency")
