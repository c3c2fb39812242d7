"""Pictures and documents made from footage, through pipes.

Decoding segments into stills, clips and grey images with ffmpeg reading from a pipe,
never a plaintext file (`decode.py`), and the printable chain-of-custody report of an
evidence package (`report.py`, fpdf2). Mechanism only: which footage may be decoded, and
for whom, is decided by `rules/`. May import `formats/`, `custody/` and `hw.annexb`.
"""
