"""flash.sh, run for real on disk images with Raspberry Pi OS's layout (MBR; FAT32 `bootfs`
at 8 MiB; ext4 `rootfs`), built here with sfdisk, mkfs.vfat and mkfs.ext4 and read back with
mtools. Refusals are checked on the target's bytes: nothing may be written.

The offline bundle is real too (images/bundle.sh, wheels from PyPI), built once per run
for this machine's platform so that the end-to-end test can install from the card.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import lzma
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLASH = ROOT / "flash.sh"
MiB = 1024 * 1024
BOOT_START = 16384            # sectors: 8 MiB, as Raspberry Pi OS
BOOT_SECTORS = 131072         # 64 MiB here (512 MiB on the real image)
ROOT_SECTORS = 32768          # 16 MiB
CLOUD_CONFIG_SCHEMA = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def run(*argv, check=True, **kwargs):
    kwargs.setdefault("env", ENV)
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


# --------------------------------------------------------------------------- images with Raspberry Pi OS's layout


def make_stock_image(directory: Path, release: str = "trixie", xz: bool = True) -> Path:
    """A small stand-in for raspios-lite: the same partition layout, the same boot files
    flash.sh looks at (trixie ships cloud-init's NoCloud files on bootfs; bookworm does not)."""
    directory.mkdir(parents=True, exist_ok=True)
    img = directory / f"raspios-{release}-lite.img"
    total = (BOOT_START + BOOT_SECTORS + ROOT_SECTORS) * 512
    with open(img, "wb") as f:
        f.truncate(total)
    table = (f"label: dos\nstart={BOOT_START}, size={BOOT_SECTORS}, type=c\n"
             f"start={BOOT_START + BOOT_SECTORS}, size={ROOT_SECTORS}, type=83\n")
    run("sfdisk", "-q", img, input=table)
    boot = directory / "boot.fat"
    boot.unlink(missing_ok=True)
    run("mkfs.vfat", "-F", "32", "-n", "BOOTFS", "-C", boot, BOOT_SECTORS // 2)
    files = {"cmdline.txt": "console=serial0,115200 console=tty1 root=PARTUUID=0badcafe-02 rootfstype=ext4 "
                            "fsck.repair=yes rootwait\n",
             "config.txt": "dtparam=audio=on\ncamera_auto_detect=1\n"}
    if release == "trixie":
        files.update({"meta-data": "dsmode: local\ninstance_id: rpios-image\n", "user-data": "#cloud-config\n",
                      "network-config": "network:\n  version: 2\n"})
    for name, text in files.items():
        (directory / name).write_text(text)
        run("mcopy", "-i", boot, directory / name, f"::/{name}")
    rootfs = directory / "root.ext4"
    rootfs.unlink(missing_ok=True)
    with open(rootfs, "wb") as f:
        f.truncate(ROOT_SECTORS * 512)
    run("mkfs.ext4", "-q", "-L", "rootfs", rootfs)
    with open(img, "r+b") as f:
        f.seek(BOOT_START * 512)
        f.write(boot.read_bytes())
        f.seek((BOOT_START + BOOT_SECTORS) * 512)
        f.write(rootfs.read_bytes())
    if not xz:
        return img
    compressed = img.with_name(img.name + ".xz")
    compressed.write_bytes(lzma.compress(img.read_bytes(), preset=1))
    return compressed


def blank_card(path: Path, size: int = 128 * MiB) -> Path:
    with open(path, "wb") as f:
        f.write(os.urandom(MiB))   # not zeros: a write that did not happen shows
        f.truncate(size)
    return path


def sha256(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(limit) if limit else f.read())
    return h.hexdigest()


def boot_files(card: Path) -> dict[str, bytes]:
    """Every file on the card's boot partition, read back with mtools (no mounting)."""
    out = card.parent / (card.name + ".boot")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    run("mcopy", "-s", "-n", "-i", f"{card}@@{BOOT_START * 512}", "::/*", out)
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the bundle (built once per run)


def host_bundle_args() -> list[str]:
    machine = platform.machine()
    version = run("python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()
    return ["--platform", f"manylinux2014_{machine}", "--platform", f"manylinux_2_28_{machine}",
            "--python", version]


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    """A real bundle for this machine (shared by xdist workers through a lock)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent   # the run's directory, above each worker's own
    out = shared / "flash-bundle"
    with open(shared / "flash-bundle.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "BUNDLE").exists():
            run("bash", ROOT / "images" / "bundle.sh", out, *host_bundle_args(), env={**ENV, "PYTHON": sys.executable})
    return out


def flash(*args, stdin: str | None = None, check=True):
    return run("bash", FLASH, *args, input=stdin, check=check)


def camera_args(image: Path, card: Path, bundle: Path, key: Path, *extra) -> list:
    return ["--image", image, "--device", card, "--role", "camera", "--name", "entrance",
            "--central", "192.0.2.10:8650", "--invite", "7k3q-9xwp-2dmf", "--ssh-key", key,
            "--bundle", bundle, "--yes", *extra]


@pytest.fixture
def ssh_key(tmp_path) -> Path:
    key = tmp_path / "it.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0ZXN0a2V5Zm9yY3VzdG9kaWFuZmxhc2hpbmcx it@laptop\n")
    return key


# --------------------------------------------------------------------------- checks of generated files


def check_cloud_config(path: Path) -> dict:
    """Debian's cloud-init validates it; every top-level key must be one it knows (a typo in a key
    would otherwise be ignored silently)."""
    done = run("cloud-init", "schema", "--config-file", path, check=False)
    assert done.returncode == 0 and "Valid cloud-config" in done.stdout, done.stdout + done.stderr
    doc = yaml_load(path)
    schema = json.loads(CLOUD_CONFIG_SCHEMA.read_text())
    known = {key for part in schema["allOf"]
             for key in schema["$defs"][part["$ref"].rsplit("/", 1)[1]].get("properties", {})}
    assert {"users", "runcmd", "ntp"} <= known
    assert set(doc) - known == set(), f"keys cloud-init does not know: {set(doc) - known}"
    return doc


def yaml_load(path: Path):
    """YAML through Debian's python3-yaml (cloud-init's own parser), as JSON."""
    done = run("/usr/bin/python3", "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
               path)
    return json.loads(done.stdout)


def check_network_config(path: Path, out: Path) -> dict:
    """cloud-init itself turns it into netplan (as at first boot); returns what it produced."""
    run("cloud-init", "devel", "net-convert", "--network-data", path, "--kind", "yaml", "--output-kind", "netplan",
        "-d", out, "-D", "debian")
    return yaml_load(out / "etc" / "netplan" / "50-cloud-init.yaml")


def write_out(tmp_path: Path, files: dict[str, bytes], name: str) -> Path:
    path = tmp_path / name.replace("/", "_")
    path.write_bytes(files[name])
    return path


# --------------------------------------------------------------------------- cards for each role


def test_camera_card_trixie(tmp_path, bundle, ssh_key):
    image = make_stock_image(tmp_path / "stock")
    card = blank_card(tmp_path / "card.img")
    done = flash(*camera_args(image, card, bundle, ssh_key))
    stock = lzma.decompress(image.read_bytes())
    assert f"read-back: {len(stock)} bytes identical to the image" in done.stderr
    assert re.search(r"read-back: \d+ files on the boot partition identical", done.stderr)
    data = card.read_bytes()
    rootfs_at = (BOOT_START + BOOT_SECTORS) * 512
    assert data[:512] == stock[:512] and data[rootfs_at:len(stock)] == stock[rootfs_at:]   # table and rootfs as shipped
    assert len(data) == 128 * MiB                                                        # the card keeps its size

    files = boot_files(card)
    wheels = {k for k in files if k.startswith("custodian/bundle/")}
    assert set(files) - wheels == {
        "cmdline.txt", "config.txt", "user-data", "meta-data", "network-config", "custodian/role",
        "custodian/node.toml", "custodian/invite", "custodian/firstboot.sh", "custodian/install-bundle.sh",
        "custodian/camera/custodian-node.service"}
    assert files["cmdline.txt"] == (tmp_path / "stock" / "cmdline.txt").read_bytes()   # untouched on trixie
    assert files["config.txt"] == (tmp_path / "stock" / "config.txt").read_bytes()
    for name in ("firstboot.sh", "install-bundle.sh"):
        assert files[f"custodian/{name}"] == (ROOT / "images" / "common" / name).read_bytes()
    assert files["custodian/camera/custodian-node.service"] == \
        (ROOT / "images" / "camera" / "custodian-node.service").read_bytes()
    on_card = {k.removeprefix("custodian/bundle/"): v for k, v in files.items() if k in wheels}
    assert on_card == {str(p.relative_to(bundle)): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}

    user_data = check_cloud_config(write_out(tmp_path, files, "user-data"))
    assert user_data["hostname"] == "entrance"
    assert user_data["users"][0]["ssh_authorized_keys"] == [ssh_key.read_text().strip()]
    assert user_data["users"][0]["lock_passwd"] is True and user_data["ssh_pwauth"] is False
    assert user_data["runcmd"] == [["bash", "/boot/firmware/custodian/firstboot.sh"]]
    assert "python3-picamera2" in user_data["packages"]
    meta = yaml_load(write_out(tmp_path, files, "meta-data"))
    assert meta["instance-id"].startswith("custodian-camera-entrance-") and meta["local-hostname"] == "entrance"
    netplan = check_network_config(write_out(tmp_path, files, "network-config"), tmp_path / "netplan")
    assert netplan["network"]["ethernets"]["eth0"]["dhcp4"] is True and "wifis" not in netplan["network"]

    node = tomllib.loads(files["custodian/node.toml"].decode())
    assert node["node"] == {"name": "entrance", "data_dir": "/var/lib/custodian",
                            "central_url": "http://192.0.2.10:8650"}
    assert node["camera"] == {"backend": "picamera2"}
    assert files["custodian/invite"] == b"7K3Q-9XWP-2DMF\n"
    assert files["custodian/role"] == b"camera\n"

    # Flashed again: a new instance id, or a card that booted once would ignore the new config.
    flash(*camera_args(image, card, bundle, ssh_key))
    again = yaml_load(write_out(tmp_path, boot_files(card), "meta-data"))
    assert again["instance-id"] != meta["instance-id"]


def test_central_card_with_wifi(tmp_path, bundle, ssh_key):
    image = make_stock_image(tmp_path / "stock", xz=False)
    card = blank_card(tmp_path / "card.img")
    psk = tmp_path / "psk"
    psk.write_text('staff "only" \\ pass\n')
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    flash("--image", image, "--device", card, "--role", "central", "--name", "library-central",
          "--central", "library-central:8650", "--ssh-key", ssh_key, "--bundle", bundle, "--yes",
          "--wifi-ssid", 'Library "Staff"', "--wifi-psk-file", psk, "--wifi-country", "US",
          "--ntp", "0.pool.ntp.org 1.pool.ntp.org", "--timezone", "America/Chicago", "--sha256", digest)
    files = boot_files(card)
    assert {"custodian/central.toml", "custodian/central/custodian-central.service",
            "custodian/central/custodian-console", "custodian/central/getty-autologin.conf",
            "custodian/central/serial-getty-autologin.conf", "custodian/central/sshd-custodian.conf",
            "custodian/central/20auto-upgrades"} <= set(files)
    assert "custodian/invite" not in files and "firstrun.sh" not in files
    for name in ("custodian-console", "sshd-custodian.conf", "getty-autologin.conf", "custodian-central.service"):
        assert files[f"custodian/central/{name}"] == (ROOT / "images" / "central" / name).read_bytes()
    assert tomllib.loads(files["custodian/central.toml"].decode())["central"] == {
        "data_dir": "/srv/custodian", "ingest_port": 8650}
    assert files["config.txt"].decode().rstrip().endswith("enable_uart=1")   # the serial console

    user_data = check_cloud_config(write_out(tmp_path, files, "user-data"))
    console = next(u for u in user_data["users"] if u["name"] == "console")
    assert console["shell"] == "/usr/local/bin/custodian-console" and console["lock_passwd"] is True
    assert user_data["ntp"]["servers"] == ["0.pool.ntp.org", "1.pool.ntp.org"]
    assert user_data["timezone"] == "America/Chicago" and "unattended-upgrades" in user_data["packages"]
    netplan = check_network_config(write_out(tmp_path, files, "network-config"), tmp_path / "netplan")
    wifi = netplan["network"]["wifis"]["wlan0"]
    assert wifi["access-points"] == {'Library "Staff"': {"password": 'staff "only" \\ pass'}}
    assert wifi["regulatory-domain"] == "US"

    sshd = files["custodian/central/sshd-custodian.conf"].decode()
    assert "Match Group custodian" in sshd and "ForceCommand /usr/local/bin/custodian-console" in sshd
    assert "AllowStreamLocalForwarding no" in sshd and "PasswordAuthentication no" in sshd
    console_sh = files["custodian/central/custodian-console"].decode()
    assert "exec /opt/custodian/.venv/bin/custodian --config /etc/custodian/central.toml tui" in console_sh
    for name in ("firstboot.sh", "install-bundle.sh"):
        run("bash", "-n", write_out(tmp_path, files, f"custodian/{name}"))


def test_bookworm_card_uses_firstrun(tmp_path, bundle, ssh_key):
    image = make_stock_image(tmp_path / "stock", release="bookworm")
    card = blank_card(tmp_path / "card.img")
    psk = tmp_path / "psk"
    psk.write_text("it's a $(secret)`x`\n")
    done = flash(*camera_args(image, card, bundle, ssh_key, "--wifi-ssid", "Branch; rm -rf /", "--wifi-psk-file", psk))
    assert "bookworm: firstrun.sh" in done.stderr
    files = boot_files(card)
    assert "user-data" not in files and "meta-data" not in files and "network-config" not in files
    cmdline = files["cmdline.txt"].decode()
    assert cmdline.count("\n") == 1 and cmdline.startswith("console=serial0,115200 console=tty1 root=PARTUUID")
    assert cmdline.rstrip().endswith("systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
                                      "systemd.unit=kernel-command-line.target")
    firstrun = write_out(tmp_path, files, "firstrun.sh")
    run("bash", "-n", firstrun)
    # The values reach the script as data, never as code.
    script = firstrun.read_text()
    assignments = script[script.index("name="):script.index("role=")]
    shown = run("bash", "-c", assignments + 'printf "%s|%s|%s|%s" "$name" "$wifi_ssid" "$wifi_psk" "$ssh_keys"')
    assert shown.stdout == f"entrance|Branch; rm -rf /|it's a $(secret)`x`|{ssh_key.read_text().strip()}"


def test_a_new_image_file_can_be_the_device(tmp_path, bundle, ssh_key):
    image = make_stock_image(tmp_path / "stock")
    card = tmp_path / "new-card.img"
    done = flash(*camera_args(image, card, bundle, ssh_key))
    assert card.stat().st_size == len(lzma.decompress(image.read_bytes()))
    # The read-back takes minutes on a real card: dd shows its progress, as it does for the write.
    read_back = done.stderr.split("reading back", 1)[1]
    assert re.search(r"\d+ bytes .* copied", read_back.split("read-back:", 1)[0]), done.stderr
    assert boot_files(card)["custodian/role"] == b"camera\n"


# --------------------------------------------------------------------------- refusals: nothing written


def assert_refused(done, *phrases):
    assert done.returncode == 1, done.stderr
    assert "refused:" in done.stderr and "nothing was written" in done.stderr
    for phrase in phrases:
        assert phrase in done.stderr, done.stderr


def test_refuses_a_target_too_small(tmp_path, bundle, ssh_key):
    image = make_stock_image(tmp_path / "stock")
    card = blank_card(tmp_path / "small.img", size=64 * MiB)
    before = sha256(card)
    assert_refused(flash(*camera_args(image, card, bundle, ssh_key), check=False),
                   "too small: 67 MB (67108864 bytes), the image needs 92 MB")     # in the units cards are sold in
    assert sha256(card) == before


def test_refuses_a_wrong_typed_confirmation(tmp_path, bundle, ssh_key):
    image = make_stock_image(tmp_path / "stock")
    card = blank_card(tmp_path / "card.img")
    before = sha256(card)
    args = [a for a in camera_args(image, card, bundle, ssh_key) if a != "--yes"]
    assert_refused(flash(*args, stdin="card\n", check=False), "you typed 'card', not 'card.img'")
    assert_refused(flash(*args, stdin="", check=False), "you typed ''")
    assert sha256(card) == before
    done = flash(*args, stdin="card.img\n")
    assert "Type its name (card.img)" in done.stderr and sha256(card) != before


def test_refuses_a_bad_checksum(tmp_path, bundle, ssh_key):
    image = make_stock_image(tmp_path / "stock")
    card = blank_card(tmp_path / "card.img")
    before = sha256(card)
    wrong = hashlib.sha256(b"another image").hexdigest()
    assert_refused(flash(*camera_args(image, card, bundle, ssh_key, "--sha256", wrong), check=False),
                   "a damaged or different download")
    assert sha256(card) == before


def test_refuses_bad_input_before_writing(tmp_path, bundle, ssh_key):
    image = make_stock_image(tmp_path / "stock")
    card = blank_card(tmp_path / "card.img")
    before = sha256(card)
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----\n")
    not_pi = tmp_path / "other.img"
    not_pi.write_bytes(b"\0" * 4 * MiB)
    cases = [
        (camera_args(image, card, bundle, private), "PRIVATE key"),
        (camera_args(image, card, bundle, ssh_key, "--invite", "12345"), "pairing code is 12"),
        (camera_args(image, card, tmp_path / "no-bundle", ssh_key), "make bundle"),
        (camera_args(not_pi, card, bundle, ssh_key), "does not look like Raspberry Pi OS"),
        ([a if a != "entrance" else "Front Door" for a in camera_args(image, card, bundle, ssh_key)], "--name"),
        (["--image", image, "--device", card, "--role", "central", "--name", "central", "--bundle", bundle, "--yes"],
         "a central needs --ssh-key"),
    ]
    for args, phrase in cases:
        assert_refused(flash(*args, check=False), phrase)
    assert sha256(card) == before


def test_refuses_a_device_that_is_not_there(tmp_path, bundle, ssh_key):
    """A mistyped /dev/sdX, or a card not plugged in: refused, and no file appears in /dev (RAM)."""
    image = make_stock_image(tmp_path / "stock")
    missing = Path(f"/dev/custodian-test-no-card-{os.getpid()}")
    try:
        assert_refused(flash(*camera_args(image, missing, bundle, ssh_key), check=False),
                       "is not a block device: is the card plugged in?")
        assert not missing.exists()
    finally:
        missing.unlink(missing_ok=True)


def losetup(*args) -> str:
    return run("losetup", *args).stdout.strip()


@pytest.fixture
def loop_card(tmp_path):
    """The card as a real block device (a loop device), detached afterwards."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("needs root and losetup for a real block device")
    card = blank_card(tmp_path / "loop-card.img")
    try:
        device = losetup("--find", "--show", card)
    except AssertionError as e:
        pytest.skip(f"this machine cannot attach loop devices: {e}")
    attached = [device]
    yield card, device, attached
    for dev in reversed(attached):
        subprocess.run(["umount", dev], capture_output=True)
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_refuses_a_mounted_device(tmp_path, bundle, ssh_key, loop_card):
    image = make_stock_image(tmp_path / "stock")
    card, device, attached = loop_card
    flash(*camera_args(image, device, bundle, ssh_key, "--force"))   # a card with its root partition...
    rootfs = losetup("--find", "--show", "--offset", str((BOOT_START + BOOT_SECTORS) * 512),
                     "--sizelimit", str(ROOT_SECTORS * 512), device)
    attached.append(rootfs)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    # ...mounted, as a desktop would mount it (read-only here, so the card's bytes stay still).
    run("mount", "-o", "ro,noload", rootfs, mountpoint)
    before = sha256(card)
    assert_refused(flash(*camera_args(image, device, bundle, ssh_key, "--force"), check=False), "is in use",
                   "is mounted")
    # The same card given as the image file behind the loop device is refused too.
    assert_refused(flash(*camera_args(image, card, bundle, ssh_key), check=False), "is mounted")
    assert sha256(card) == before
    run("umount", mountpoint)


def test_refuses_a_non_removable_device_without_force_and_writes_with_bmaptool(tmp_path, bundle, ssh_key, loop_card):
    card, device, _ = loop_card
    image = make_stock_image(tmp_path / "stock", xz=False)
    before = sha256(card)
    assert_refused(flash(*camera_args(image, device, bundle, ssh_key), check=False), "not a removable device")
    assert sha256(card) == before
    if shutil.which("bmaptool") is None:
        pytest.skip("bmaptool (bmap-tools) is not installed")
    run("bmaptool", "create", "-o", str(image) + ".bmap", image)
    done = flash(*camera_args(image, device, bundle, ssh_key, "--force"))
    assert "writing with bmaptool" in done.stderr and "read-back:" in done.stderr
    assert boot_files(card)["custodian/invite"] == b"7K3Q-9XWP-2DMF\n"


def test_refuses_the_system_disk(tmp_path, bundle, ssh_key):
    source = run("findmnt", "-rnvo", "SOURCE", "--target", "/").stdout.strip()
    if not Path(source).is_block_device():
        pytest.skip(f"/ is not on a block device here ({source or 'none'}): no system disk to protect")
    disk = run("lsblk", "-nrpso", "NAME,TYPE", source).stdout.split("\n")
    disk = next(line.split()[0] for line in disk if line.endswith(" disk") or line.endswith(" loop"))
    image = make_stock_image(tmp_path / "stock")

    def first_16_mib() -> str | None:
        try:
            with open(disk, "rb") as f:
                return hashlib.sha256(f.read(16 * MiB)).hexdigest()
        except PermissionError:   # a sandbox may hide the disk's bytes even from root
            return None

    before = first_16_mib()
    done = flash(*camera_args(image, disk, bundle, ssh_key, "--force"), check=False)
    assert_refused(done, "never the system disk")
    assert "writing" not in done.stderr
    assert first_16_mib() == before


def test_every_node_unit_stops_on_a_refused_pairing_code():
    """Exit status 78 is `custodian node run`'s for a refused code (docs/provisioning.md); a unit that
    restarted on it would ask the central again and again, each time a wrong code counted."""
    for unit in ("camera/custodian-node.service", "central/custodian-node@.service"):
        lines = (ROOT / "images" / unit).read_text().splitlines()
        assert "RestartPreventExitStatus=78" in lines, unit


def test_the_scripts_pass_shellcheck():
    scripts = [FLASH, ROOT / "images" / "bundle.sh", ROOT / "images" / "central" / "custodian-console",
               *sorted((ROOT / "images" / "common").glob("*.sh"))]
    done = run("shellcheck", "--severity=warning", *scripts, check=False)
    assert done.returncode == 0, done.stdout


# --------------------------------------------------------------------------- the bundle


def check_bundle_layout(bundle: Path, pythons: list[str], arch: str) -> None:
    wheels = sorted(p.name for p in (bundle / "wheels").iterdir())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"custodian_appliance-{version}-py3-none-any.whl" in wheels
    assert any(w.startswith("pip-") for w in wheels)
    listed = [line.split()[1] for line in (bundle / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == [f"wheels/{w}" for w in wheels]
    run("sha256sum", "--quiet", "-c", "SHA256SUMS", cwd=bundle)
    names = {re.split(r"-\d", w, maxsplit=1)[0].lower().replace("_", "-") for w in wheels}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        assert re.split(r"[<>=!~ ]", requirement)[0].lower() in names, requirement
    for py in pythons:   # compiled dependencies: one wheel per Python version, for the Pi's architecture
        tag = "cp" + py.replace(".", "")
        for compiled in ("aiohttp", "multidict", "yarl"):
            assert any(w.startswith(compiled + "-") and f"-{tag}-" in w and arch in w for w in wheels), (compiled, tag)
    assert (bundle / "BUNDLE").read_text().startswith(f"custodian {version}\n")


def test_bundle_for_this_machine_installs_offline(bundle, tmp_path):
    args = host_bundle_args()
    check_bundle_layout(bundle, [args[-1]], platform.machine())
    venv = tmp_path / "venv"
    run("bash", ROOT / "images" / "common" / "install-bundle.sh", bundle, venv)
    assert run(venv / "bin" / "custodian", "--help").stdout.startswith("usage: custodian")


@pytest.mark.slow
def test_make_bundle_layout_for_the_pi(tmp_path):
    out = tmp_path / "bundle"
    run("bash", ROOT / "images" / "bundle.sh", out, env={**ENV, "PYTHON": sys.executable})
    check_bundle_layout(out, ["3.11", "3.13"], "aarch64")
