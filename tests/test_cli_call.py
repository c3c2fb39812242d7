"""`custodian call`, run as a real process against a real central: it logs out after the
call, never needs a secret on its command line (asked without echo, or read from a file
or standard input), says whom it logs in as, and finds a running demo."""
from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DIRECTOR, PEOPLE, serving_central_at

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODIAN_")}


def env_for(name: str | None = None, passphrase: str | None = None, **extra) -> dict:
    env = dict(CLEAN_ENV, **extra)
    if name:
        env["CUSTODIAN_USER"] = name
    if passphrase:
        env["CUSTODIAN_PASSPHRASE"] = passphrase
    return env


def cli(*args, env, cwd, stdin=subprocess.DEVNULL, input=None):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60, input=input, stdin=None if input is not None else stdin)


def cli_on_terminal(*args, answers: list[tuple[str, str]], env, cwd, timeout=60) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal of its own, typing each answer once its prompt (a regex) shows.
    Returns the exit status and everything the terminal showed (so: what was echoed)."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=cwd, start_new_session=True)
    os.close(slave)
    shown, since_answer, pending = b"", b"", list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:             # the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
                since_answer += chunk
                if pending and re.search(pending[0][0].encode(), since_answer):
                    os.write(master, pending.pop(0)[1].encode() + b"\n")
                    since_answer = b""
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"the CLI did not finish; it showed: {shown.decode(errors='replace')}")
    finally:
        os.close(master)
        proc.wait(10)
    assert not pending, f"never asked {pending[0][0]!r}; it showed: {shown.decode(errors='replace')}"
    return proc.returncode, shown.decode(errors="replace")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A directory where `make demo` ran: its central serving in var/demo/central."""
    root = tmp_path_factory.mktemp("cli")
    with serving_central_at(root / "var" / "demo" / "central") as serving:
        serving.root = root
        serving.sock = str(serving.central.paths.data / "api.sock")
        for name in ("ivy", "sam"):
            serving.people.login(name)          # and acknowledge the policy
        yield serving


def sessions_of(central, user_id: str) -> tuple[int, int]:
    entries = central.audit.query(actor=user_id, action_prefix="session.")
    return (sum(e["action"] == "session.login" for e in entries), sum(e["action"] == "session.logout" for e in entries))


def new_account(site, name: str, temporary: str) -> str:
    people = site.people
    return site.central.call("user.create", {"name": name, "role": "staff", "passphrase": temporary},
                             people.tokens["director"])["user"]["id"]


def test_call_logs_out_after_the_call_even_when_refused(site):
    ivy = site.people.ids["ivy"]
    before = sessions_of(site.central, ivy)
    for op in ("camera.list", "session.whoami", "audit.query"):      # the last is the Director's: refused
        out = cli("call", op, "--socket", site.sock, env=env_for("ivy", PEOPLE["ivy"][1]), cwd=site.root)
        assert out.returncode == (1 if op == "audit.query" else 0), out.stderr
    logins, logouts = sessions_of(site.central, ivy)
    assert (logins - before[0], logouts - before[1]) == (3, 3)


def test_a_person_is_named_by_login_name_on_the_command_line(site):
    out = cli("call", "user.unlock", '{"user": "sam"}', "--socket", site.sock, env=env_for("ivy", PEOPLE["ivy"][1]),
              cwd=site.root)
    assert out.returncode == 0, out.stderr
    assert site.central.audit.query(action_prefix="user.unlock")[-1]["target"] == site.people.ids["sam"]


def test_a_passphrase_left_out_of_the_json_is_asked_for_without_echo(site):
    assert site.central.custody.is_sealed
    try:
        status, shown = cli_on_terminal("call", "archive.unseal", "--socket", site.sock,
                                        answers=[(r"Your passphrase \(passphrase\) for archive.unseal: ", DIRECTOR[1])],
                                        env=env_for(*DIRECTOR), cwd=site.root)
        assert status == 0, shown
        assert DIRECTOR[1] not in shown                 # not echoed
        assert not site.central.custody.is_sealed
    finally:
        site.people.call("director", "archive.seal")


def test_with_no_user_given_the_prompt_says_which_account_and_how_to_choose_another(site):
    status, shown = cli_on_terminal("call", "session.whoami", "--socket", site.sock,
                                    answers=[("passphrase for sam: ", PEOPLE["sam"][1])],
                                    env=env_for(LOGNAME="sam", USER="sam"), cwd=site.root)
    assert status == 0, shown
    assert "logging in as sam, your login name on this computer" in shown and "--user NAME" in shown
    assert PEOPLE["sam"][1] not in shown and '"name": "sam"' in shown


def test_a_new_passphrase_is_typed_twice_and_a_mismatch_sends_nothing(site):
    user_id = new_account(site, "ann", "ann-temporary-1")
    ask = [(r"Current passphrase \(old\) for user.change_passphrase: ", "ann-temporary-1"),
           (r"New passphrase \(new\) for user.change_passphrase: ", "ann-chosen-pass-1")]
    status, shown = cli_on_terminal("call", "user.change_passphrase", "--socket", site.sock,
                                    answers=ask + [("again, to be sure: ", "ann-chosen-pasS-1")],
                                    env=env_for("ann", "ann-temporary-1"), cwd=site.root)
    assert status == 2 and "differ: nothing was sent" in shown
    assert sessions_of(site.central, user_id) == (0, 0)          # not even logged in
    status, shown = cli_on_terminal("call", "user.change_passphrase", "--socket", site.sock,
                                    answers=ask + [("again, to be sure: ", "ann-chosen-pass-1")],
                                    env=env_for("ann", "ann-temporary-1"), cwd=site.root)
    assert status == 0, shown
    assert "ann-temporary-1" not in shown and "ann-chosen-pass-1" not in shown
    assert site.central.call("session.login", {"user": "ann", "passphrase": "ann-chosen-pass-1"})["token"]


def test_secrets_come_from_files_and_standard_input_never_the_command_line(site, tmp_path):
    new_account(site, "bea", "bea-temporary-1")
    login, old = tmp_path / "login", tmp_path / "old"
    login.write_text("bea-temporary-1\n")
    old.write_text("bea-temporary-1\n")
    argv = ["call", "user.change_passphrase", "--socket", site.sock, "--user", "bea", "--passphrase-file", str(login),
            "--secret-file", f"old={old}", "--secret-file", "new=-"]
    out = cli(*argv, env=env_for(), cwd=site.root, input="bea-chosen-pass-1\n")
    assert out.returncode == 0, out.stderr
    assert not any("bea-" in a for a in argv)                     # nothing for ps or the history to show
    assert site.central.call("session.login", {"user": "bea", "passphrase": "bea-chosen-pass-1"})["token"]


def test_without_a_terminal_or_a_file_it_says_how_to_give_the_secret_and_logs_nobody_in(site):
    before = sessions_of(site.central, site.people.ids["director"])
    out = cli("call", "archive.unseal", "--socket", site.sock, env=env_for(*DIRECTOR), cwd=site.root)
    assert out.returncode == 2
    assert "no terminal to ask for" in out.stderr and "--secret-file passphrase=PATH" in out.stderr
    assert sessions_of(site.central, site.people.ids["director"]) == before
    assert site.central.custody.is_sealed


def test_a_running_demo_is_found_from_the_directory_it_ran_in(site):
    out = cli("call", "session.whoami", env=env_for("ivy", PEOPLE["ivy"][1]), cwd=site.root)   # no --data
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["user"]["name"] == "ivy"
    assert "using the demo's in var/demo/central" in out.stderr


def test_no_central_running_says_how_to_reach_one(tmp_path):
    out = cli("call", "session.whoami", env=env_for("ivy", "whatever-passphrase"), cwd=tmp_path)
    assert out.returncode == 1
    message = json.loads(out.stderr)["error"]["message"]
    assert "no central runs in var/central" in message and "--data DIR" in message
    (tmp_path / "var" / "demo" / "central").mkdir(parents=True)         # a demo ran here once
    out = cli("call", "session.whoami", env=env_for("ivy", "whatever-passphrase"), cwd=tmp_path)
    message = json.loads(out.stderr)["error"]["message"]
    assert "the demo in var/demo is not running" in message and "make demo" in message
    assert not Path(tmp_path / "var" / "central").exists()              # nothing created on the way


def test_a_new_account_is_told_the_commands_that_ready_it_for_use(site, tmp_path):
    """An IT person's first command refuses until they choose a passphrase (C8) and acknowledge the
    policy (C22): each refusal says which command does it, and following them leads to the invite."""
    site.central.call("user.create", {"name": "cid", "role": "it", "passphrase": "cid-temporary-1"},
                      site.people.tokens["director"])
    invite = ["camera", "invite", "hall", "--category", "entrance", "--location", "Hall doors", "--socket", site.sock]
    out = cli(*invite, env=env_for("cid", "cid-temporary-1"), cwd=site.root)
    assert out.returncode == 2 and "[passphrase_change_required]" in out.stderr
    assert "custodian call user.change_passphrase" in out.stderr, out.stderr
    (tmp_path / "old").write_text("cid-temporary-1\n")
    out = cli("call", "user.change_passphrase", "--socket", site.sock, "--secret-file", f"old={tmp_path / 'old'}",
              "--secret-file", "new=-", env=env_for("cid", "cid-temporary-1"), cwd=site.root,
              input="cid-chosen-pass-1\n")
    assert out.returncode == 0, out.stderr
    mine = env_for("cid", "cid-chosen-pass-1")
    out = cli(*invite, env=mine, cwd=site.root)
    assert out.returncode == 2 and "[policy_ack_required]" in out.stderr
    assert "custodian call policy.text" in out.stderr and "custodian call policy.acknowledge" in out.stderr
    refused = cli("call", "camera.list", "--socket", site.sock, env=mine, cwd=site.root)   # scripts get it as JSON
    assert "policy.acknowledge" in json.loads(refused.stderr)["error"]["next"]
    version = json.loads(cli("call", "policy.text", "--socket", site.sock, env=mine, cwd=site.root).stdout)["version"]
    out = cli("call", "policy.acknowledge", json.dumps({"version": version}), "--socket", site.sock, env=mine,
              cwd=site.root)
    assert out.returncode == 0, out.stderr
    out = cli(*invite, env=mine, cwd=site.root)
    assert out.returncode == 0 and "pairing code for camera hall:" in out.stdout, out.stderr
