"""What a person reads in an evidence package: the chain-of-custody report (PDF) and README.txt.

Both are made from the package's manifest alone (docs/export-format.md), so they say
nothing the signed manifest does not. The PDF is for a court clerk: the incident, the
instrument, counsel, the approvals, the footage with its gaps, every digest, a
contact sheet of the stills, and how to check it all. The README tells the recipient
how to verify the package with sha256sum and openssl (and ffmpeg for the clips).
"""
from __future__ import annotations

import io

from fpdf import FPDF

FONT_DIR = "/usr/share/fonts/truetype/dejavu/"   # fonts-dejavu-core (Makefile APT_PACKAGES)
VERIFY_BEGIN = "----- verify.sh: run it with sh inside this folder -----"
VERIFY_END = "----- end of verify.sh -----"


def _who(person: dict | None) -> str:
    return f"{person['name']} ({person['role']}, {person['id']})" if person else "unknown"


def _instrument_lines(instrument: dict) -> list[str]:
    if instrument.get("sealed") and "reference" not in instrument:
        return [f"{instrument['id']}: {instrument['kind_name']}, sealed until filed with the court: its particulars "
                "are withheld from this package (policy: search warrants are confidential until filed)."]
    lines = [f"{instrument['id']}: {instrument['kind_name']} {instrument['reference']}, {instrument['court']}",
             f"issued {instrument['issued_on']}, received {instrument['received_on']}",
             f"scope: {', '.join(instrument['cameras']) or 'every camera'}, {instrument['start']} to {instrument['end']}",
             f"demands: {instrument['description']}"]
    if instrument.get("filed_on"):
        lines.append(f"filed with the court on {instrument['filed_on']}")
    return lines


def _clip_lines(camera: dict) -> list[str]:
    lines = []
    for p in camera["pieces"]:
        how = "stream copy, no re-encoding" if p["made"] == "stream_copy" else "re-encoded: " + ", ".join(p["filters"])
        lines.append(f"{p['file']}: {p['first_frame_at']} to {p['last_frame_at']}, {p['frames']} pictures "
                     f"({p['duration_seconds']} s at {p['fps']} fps), {len(p['segments'])} segment(s), {how}")
    for g in camera["gaps"]:
        where = f" from {g['from']} to {g['to']}" if g.get("from") else ""
        lines.append(f"GAP ({g['kind']}){where}: {g['detail']}")
    if not camera["gaps"]:
        lines.append("no gaps in the window")
    return lines


# --------------------------------------------------------------------------- README.txt


def readme(manifest: dict) -> str:
    release, key = manifest["release"], manifest["appliance_key"]
    clips = [p for c in manifest["cameras"] for p in c["pieces"]]
    lines = [
        manifest["label"],
        "",
        f"Evidence package {manifest['package']}",
        f"Release {release['id']} to {release['recipient']}",
        f"Footage of {', '.join(release['cameras'])} from {release['start']} to {release['end']}",
        f"Built {manifest['built']['at']} by {_who(manifest['built']['by'])}",
        "",
        "WHAT IS HERE",
        "  video/*.mp4           the footage, one clip per camera and unbroken stretch of recording",
        "  stills/*.png          pictures at chosen moments",
        "  custody-report.pdf    the chain-of-custody report: instrument, counsel, approvals, footage, digests",
        "  segments/<camera>/    the camera's own signed header and trailer of every source segment, and its key",
        "  manifest.json         everything above, described; signed by the library's appliance key",
        "  manifest.sig          that signature (Ed25519)",
        "  appliance-key.pem     the appliance's public key",
        "  SHA256SUMS            the SHA-256 of every file but manifest.json, manifest.sig and itself",
        "",
        "Clips:",
        *[f"  {p['file']}  {p['first_frame_at']} to {p['last_frame_at']}  ({p['made'].replace('_', ' ')})" for p in clips],
        "",
        "HOW TO VERIFY (a POSIX shell, sha256sum and OpenSSL 3; ffmpeg for step 6)",
        "",
        "1. The appliance key's fingerprint, the SHA-256 of its 32 raw bytes, must be",
        f"   {key['sha256_raw']}",
        "   and must match the fingerprint the library gave you separately (by letter or in person):",
        "   a package signed by anyone else is not the library's.",
        "2. manifest.sig must be the appliance key's signature over manifest.json.",
        "3. SHA256SUMS must be the file the signed manifest names (its \"sha256sums\").",
        "4. Every file must match its line in SHA256SUMS.",
        "5. Every segment header and trailer must carry the camera's signature (segments/<camera>/node-key.pem).",
        "6. Each clip turned back into raw H.264 must have the SHA-256 the manifest records for it",
        "   (\"annexb\"): stream copy changes no byte of the pictures. docs/export-format.md in the",
        "   Custodian sources says how to check it segment by segment.",
        "",
        "Steps 1-5 as a script (it stops at the first fault):",
        "",
        VERIFY_BEGIN,
        "set -e",
        "fp=$(openssl pkey -pubin -in appliance-key.pem -outform DER | tail -c 32 | sha256sum | cut -c 1-64)",
        f"[ \"$fp\" = \"{key['sha256_raw']}\" ] || {{ echo \"appliance key: WRONG KEY $fp\"; exit 1; }}",
        "echo \"appliance key: $fp\"",
        "openssl pkeyutl -verify -pubin -inkey appliance-key.pem -rawin -in manifest.json -sigfile manifest.sig",
        "grep -q \"\\\"sha256sums\\\": \\\"$(sha256sum < SHA256SUMS | cut -c 1-64)\\\"\" manifest.json ||",
        "  { echo \"SHA256SUMS: NOT the one the manifest names\"; exit 1; }",
        "echo \"SHA256SUMS: named by the manifest\"",
        "sha256sum -c --strict --quiet SHA256SUMS && echo \"files: all match SHA256SUMS\"",
        "for h in segments/*/*.json; do",
        "  openssl pkeyutl -verify -pubin -inkey \"$(dirname \"$h\")/node-key.pem\" -rawin -in \"$h\" \\",
        "    -sigfile \"${h%.json}.sig\" >/dev/null || { echo \"$h: BAD CAMERA SIGNATURE\"; exit 1; }",
        "done",
        "echo \"segments: every header and trailer carries its camera's signature\"",
        VERIFY_END,
        "",
        "Step 6, for each clip (compare with its \"annexb\" \"sha256\" in manifest.json):",
        "",
        *[f"  ffmpeg -v error -i {p['file']} -c copy -bsf:v h264_mp4toannexb -f h264 - | sha256sum"
          f"    # {p['annexb']['sha256']}" for p in clips if p["made"] == "stream_copy"],
        "",
        "Or, with the Custodian software: custodian export verify <this folder or the .zip>",
        "",
        manifest["label"],
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- custody-report.pdf


def _png_aspect(png: bytes) -> float:
    """Height over width, from the PNG's IHDR chunk (bytes 16-23: width, height, big-endian)."""
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return height / width if width else 0.75


class _Report(FPDF):
    def __init__(self, label: str):
        super().__init__(format="A4")
        self.label = label
        self.add_font("Sans", "", FONT_DIR + "DejaVuSans.ttf")
        self.add_font("Sans", "B", FONT_DIR + "DejaVuSans-Bold.ttf")
        self.set_margins(15, 18, 15)
        self.set_auto_page_break(True, 18)

    def header(self) -> None:
        self.set_font("Sans", "B", 8)
        self.set_text_color(150, 0, 0)
        self.cell(0, 5, "CONFIDENTIAL LIBRARY VIDEO RECORD", new_x="LMARGIN", new_y="NEXT", align="C")
        self.set_text_color(0, 0, 0)
        self.ln(2)

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font("Sans", "", 7)
        self.cell(0, 5, f"page {self.page_no()}/{{nb}}", align="C")

    def heading(self, text: str) -> None:
        self.ln(2)
        self.set_font("Sans", "B", 12)
        self.cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
        self.set_font("Sans", "", 9)

    def para(self, text: str) -> None:
        self.set_font("Sans", "", 9)
        self.multi_cell(0, 4.6, text, new_x="LMARGIN", new_y="NEXT")

    def mono(self, text: str) -> None:
        # Digests and file names are ASCII: the PDF core font Courier needs no font file to parse
        # and lays out far faster than a TrueType font (the digest table is most of the report).
        # One cell per line: a line of the table fits the page, so it needs none of multi_cell's line
        # breaking, which measured every character one by one (half the report's time).
        self.set_font("Courier", "", 7)
        for line in text.split("\n"):
            if self.get_string_width(line) <= self.epw:
                self.cell(0, 3.6, line, new_x="LMARGIN", new_y="NEXT")
            else:                  # a long file name (a long camera id): wrapped, never cut off
                self.multi_cell(0, 3.6, line, new_x="LMARGIN", new_y="NEXT")
        self.set_font("Sans", "", 9)


def custody_report(manifest: dict, pngs: dict[str, bytes]) -> bytes:
    release, built, approved = manifest["release"], manifest["built"], manifest["approved"]
    pdf = _Report(manifest["label"])
    pdf.add_page()
    pdf.set_font("Sans", "B", 16)
    pdf.cell(0, 9, "Chain-of-custody report", new_x="LMARGIN", new_y="NEXT")
    pdf.para(f"Release {release['id']} of library video footage to law enforcement. Package {manifest['package']}.")
    pdf.para(manifest["label"])

    pdf.heading("1. The incident")
    incident = manifest.get("incident")
    pdf.para(f"Incident {incident['id']}: {incident['grounds'].replace('_', ' ')}, {incident['occurred_at']}, "
             f"at {incident['location']}." if incident else "No library incident is linked to this release.")

    pdf.heading("2. The legal instrument")
    for line in _instrument_lines(manifest["instrument"]):
        pdf.para(line)

    pdf.heading("3. Legal counsel")
    for c in manifest["counsel"]:
        pdf.para(f"{c['id']}: {c['counsel']} consulted on {c['consulted_on']}, recorded by {_who(c['recorded_by'])} "
                 f"at {c['recorded_at']}. (The advice itself stays with the library.)")

    pdf.heading("4. Approvals and custody")
    pdf.para(f"Release approved by {_who(approved['by'])}"
             f"{' as acting director' if approved['acting_director'] else ''} at {approved['at']}.")
    pdf.para(f"Recipient: {release['recipient']}.")
    pdf.para(f"Package built by {_who(built['by'])} at {built['at']} (build {built['build']}) on {built['medium']}, "
             f"taken by {built['taken_by']}; {'an AES-256 encrypted ZIP' if built['encrypted'] else 'a folder'}.")
    pdf.para(f"Window released: {release['start']} to {release['end']}; cameras {', '.join(release['cameras'])}. "
             f"Segments overlapping it when the release was approved: {release['segments_at_approval']}.")

    pdf.heading("5. The footage")
    for camera in manifest["cameras"]:
        pdf.set_font("Sans", "B", 9)
        pdf.cell(0, 5, f"Camera {camera['camera']} ({camera['width']}x{camera['height']})",
                 new_x="LMARGIN", new_y="NEXT")
        for line in _clip_lines(camera):
            pdf.para(line)

    pdf.heading("6. Digests (SHA-256)")
    pdf.para(f"Appliance key (raw 32 bytes): {manifest['appliance_key']['sha256_raw']}")
    for camera in manifest["cameras"]:
        pdf.para(f"Camera {camera['camera']}, node key {camera['node_key']}")
        for p in camera["pieces"]:
            pdf.mono(f"{p['file']}\n  file   {p['sha256']}\n  H.264  {p['annexb']['sha256']}")
            pdf.mono("\n".join(f"  segment {s['seq']:>6}  {s['digest']}\n"
                               f"       H.264 part  {s['annexb']['sha256']}" for s in p["segments"]))
    for s in manifest["stills"]:
        if s.get("file"):
            pdf.mono(f"{s['file']}\n  file   {s['sha256']}")

    pdf.heading("7. Contact sheet")
    shown = [s for s in manifest["stills"] if s.get("file") and s["file"] in pngs]
    width, gap = 56.0, 6.0
    for row in range(0, len(shown), 3):
        stills = shown[row:row + 3]
        heights = [width * _png_aspect(pngs[s["file"]]) for s in stills]
        if pdf.get_y() + max(heights) + 10 > pdf.h - 20:
            pdf.add_page()
        top = pdf.get_y()
        for column, (still, height) in enumerate(zip(stills, heights)):
            x = pdf.l_margin + column * (width + gap)
            pdf.image(io.BytesIO(pngs[still["file"]]), x=x, y=top, w=width, h=height)
            pdf.set_xy(x, top + height + 1)
            pdf.set_font("Sans", "", 6.5)
            pdf.multi_cell(width, 3, f"{still['camera']} {still['frame_at']}", new_x="LEFT", new_y="NEXT")
        pdf.set_xy(pdf.l_margin, top + max(heights) + 9)
    missing = [s for s in manifest["stills"] if not s.get("file")]
    for s in missing:
        pdf.para(f"No still of {s['camera']} at {s['at']}: {s['missing']}.")

    pdf.heading("8. How to verify this package")
    pdf.para("Everything in the package is described in manifest.json, which the library's appliance signed "
             "(manifest.sig, Ed25519; the key is appliance-key.pem). README.txt gives the commands: check the key's "
             "fingerprint against the one the library gave you separately; verify the signature with openssl "
             "pkeyutl -verify -rawin; check that SHA256SUMS is the file the manifest names and that every file "
             "matches it (sha256sum -c); check each segment's header and trailer against the camera's key; and "
             "turn each clip back into H.264 with ffmpeg (-c copy -bsf:v h264_mp4toannexb) and compare its SHA-256 "
             "with the one above. A stream copy changes no byte of the pictures, so a clip that matches is the "
             "camera's recording, unaltered.")
    return bytes(pdf.output())
