"""Telling the Director at once: real commands, a real SMTP conversation, retries, audit records."""
from __future__ import annotations

import socket
import sys
import threading
import time
from datetime import timedelta




def wait_until(predicate, timeout=30.0):   # a loaded machine starts a process slowly
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_C15_failed_delivery_is_retried_and_every_attempt_audited(central, people, tmp_path):
    flag = tmp_path / "pager-works"
    inbox = tmp_path / "pager.jsonl"
    # A pager script that fails until the flag file exists (the SMTP relay is down, say).
    script = tmp_path / "pager.py"
    script.write_text(
        "import sys, pathlib\n"
        f"if not pathlib.Path({str(flag)!r}).exists(): sys.exit('relay unreachable')\n"
        f"open({str(inbox)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    central.cfg.central.notify_command = f"{sys.executable} {script}"
    people.call("sam", "breach.report", what="A USB stick with an export was left at the desk",
                noticed_at=central.now().isoformat())
    assert wait_until(lambda: central.audit.query(action_prefix="notify.failed"))
    entry = central.records.all("outbox")[0]
    assert entry["delivered_at"] is None and entry["attempts"] == 1 and "relay unreachable" in entry["last_error"]
    assert central.notifier.deliver_due() == 0          # not due yet: backoff
    flag.touch()
    central.clock.offset += timedelta(minutes=2)
    assert central.notifier.deliver_due() == 1
    assert "breach" in inbox.read_text()
    assert central.records.all("outbox")[0]["delivered_at"] is not None
    assert central.audit.query(action_prefix="notify.delivered")


class TinySmtpServer:
    """Just enough SMTP (RFC 5321) on loopback to receive one message."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.messages: list[str] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        conn, _ = self.sock.accept()
        f = conn.makefile("rwb")

        def say(line):
            f.write(line.encode() + b"\r\n")
            f.flush()

        say("220 library-relay ESMTP")
        data = None
        for raw in f:
            line = raw.decode().rstrip("\r\n")
            if data is not None:
                if line == ".":
                    self.messages.append("\n".join(data))
                    data = None
                    say("250 queued")
                else:
                    data.append(line)
                continue
            verb = line.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250 library-relay")
            elif verb == "DATA":
                data = []
                say("354 go ahead")
            elif verb == "QUIT":
                say("221 bye")
                break
            else:
                say("250 ok")
        conn.close()


def test_alerts_reach_the_directors_mailbox_through_the_librarys_smtp_server(central, people):
    server = TinySmtpServer()
    c = central.cfg.central
    c.smtp_host, c.smtp_port, c.notify_email = "127.0.0.1", server.port, "director@library.example"
    people.call("sam", "breach.report", what="Footage shown to a visitor without approval",
                noticed_at=central.now().isoformat())
    assert wait_until(lambda: server.messages)
    message = server.messages[0]
    assert "To: director@library.example" in message and "[Custodian] breach" in message
    assert "without approval" not in message, "alert mail carries no report details"
    assert wait_until(lambda: central.audit.query(action_prefix="notify.delivered"))

