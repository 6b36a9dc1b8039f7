"""
Puts the assignment's four data files (Wikipedia biographies for pretraining, birth-place
questions for finetuning and evaluation) at the top of the repository, checking their
SHA-256 sums. The repository does not commit them: they are copied from a local folder
(--from DIR, else $A5_DATA_DIR, else ../shared/data) or taken from the course's a5.zip.

    python get_data.py             # fetch whatever is missing or wrong
    python get_data.py --check     # only verify what is already here
"""

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent
COURSE_URL = "https://web.stanford.edu/class/cs224n/assignments/a5.zip"
EXPECTED_SHA256 = {
    "wiki.txt": "17e381468abd91b60be8acaff006c66b77532b4ea4c0ce097b0a686d2e8e8219",
    "birth_places_train.tsv": "02364dfca78e23d2583a19f03a2d8cddd90ee3e1a3795ddec7f0addadea30b0d",
    "birth_dev.tsv": "101a56073eba0db9aad5e2aaf1aa9bf8bdae966ae3aaed8fc8cda5edfa7856da",
    "birth_test_inputs.tsv": "5ccd3b2a1682e0daf90d59488aef8805ef21b9d35795cc3bdabdea79d293aa1f",
}


# The handout's part 2(f) spells the finetuning file birthplaces_train.tsv once; a link by that
# name lets its commands run exactly as written.
HANDOUT_SPELLINGS = {"birthplaces_train.tsv": "birth_places_train.tsv"}


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install(name, source, root, expected_sha256):
    """Writes the open binary file `source` to root/name. It goes through a side file that is
    renamed into place only once its sum is right, so no half-written or wrong file is ever
    left where the code reads its data."""
    partial = root / f".{name}.part"
    try:
        with open(partial, "wb") as out:
            shutil.copyfileobj(source, out)
        got = sha256_of(partial)
        if got != expected_sha256:
            raise ValueError(f"{name} has the wrong SHA-256 sum: expected {expected_sha256}, got {got}")
        os.replace(partial, root / name)
    finally:
        partial.unlink(missing_ok=True)


def fetch(root, expected_sums, folder, url):
    """Gets every file of expected_sums that is not already good in root, first from folder
    (None to skip it), then from the zip archive at url. Returns (names still missing, problems)."""
    needed, problems = [], []
    for name, expected in expected_sums.items():
        if (root / name).is_file() and sha256_of(root / name) == expected:
            print(f"{name}: already present")
            continue
        if (root / name).is_file():
            print(f"{name}: present but its SHA-256 sum is wrong, fetching it again")
        needed.append(name)
    if needed and folder is None:
        problems.append("local folder: none given (--from or $A5_DATA_DIR) and ../shared/data does not exist")
    elif needed and not Path(folder).is_dir():
        problems.append(f"local folder {folder}: does not exist")
    elif needed:
        for name in list(needed):
            try:
                with open(Path(folder) / name, "rb") as source:
                    install(name, source, root, expected_sums[name])
            except (OSError, ValueError) as e:
                problems.append(f"local folder {folder}: {e}")
            else:
                print(f"{name}: copied from {folder}")
                needed.remove(name)
    if needed:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                archive_path = Path(tmp) / "a5.zip"
                with urllib.request.urlopen(url, timeout=60) as response, open(archive_path, "wb") as out:
                    shutil.copyfileobj(response, out)
                archive = zipfile.ZipFile(archive_path)
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                problems.append(f"download {url}: {e}")
                return needed, problems
            with archive:
                # match by basename: the files sit in some folder of the zip, and which one is not ours to fix
                members = {PurePosixPath(m).name: m for m in archive.namelist() if not m.startswith("__MACOSX")}
                for name in list(needed):
                    if name not in members:
                        problems.append(f"download {url}: the archive has no {name}")
                        continue
                    try:
                        with archive.open(members[name]) as source:
                            install(name, source, root, expected_sums[name])
                    except (OSError, ValueError, zipfile.BadZipFile) as e:
                        problems.append(f"download {url}: {e}")
                    else:
                        print(f"{name}: downloaded from {url}")
                        needed.remove(name)
    return needed, problems


def link_handout_spellings(root):
    for alias, name in HANDOUT_SPELLINGS.items():
        if not (root / alias).exists() and not (root / alias).is_symlink():
            (root / alias).symlink_to(name)
            print(f"{alias}: linked to {name} (the handout's spelling in part 2(f))")


def check(root, expected_sums):
    """Prints one line per file; returns True when all are present with the right sum."""
    all_good = True
    for name, expected in expected_sums.items():
        if not (root / name).is_file():
            print(f"{name}: missing")
            all_good = False
        elif (got := sha256_of(root / name)) != expected:
            print(f"{name}: wrong SHA-256 sum: expected {expected}, got {got}")
            all_good = False
        else:
            print(f"{name}: ok")
    return all_good


def main():
    parser = argparse.ArgumentParser(description="Get and verify the assignment's data files.")
    parser.add_argument("--from", dest="folder",
                        help="folder holding the four files (default: $A5_DATA_DIR, else ../shared/data)")
    parser.add_argument("--url", default=COURSE_URL, help="zip archive to download when no folder has them")
    parser.add_argument("--check", action="store_true", help="only verify the files already at the top level")
    args = parser.parse_args()

    if args.check:
        if not check(ROOT, EXPECTED_SHA256):
            print("Some data files are missing or wrong: run python get_data.py to fetch them.", file=sys.stderr)
            sys.exit(2)
        return
    default_folder = ROOT.parent / "shared" / "data"
    folder = args.folder or os.environ.get("A5_DATA_DIR") or (default_folder if default_folder.is_dir() else None)
    missing, problems = fetch(ROOT, EXPECTED_SHA256, folder, args.url)
    if missing:
        print(f"get_data.py: could not get {', '.join(missing)}. Tried:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print("Pass --from DIR pointing at a folder with the four files, or --url pointing at a copy of a5.zip.",
              file=sys.stderr)
        sys.exit(2)
    link_handout_spellings(ROOT)


if __name__ == "__main__":
    main()
