"""The SQL statements of the operators' runbooks (../shared/seeds/*.md), extracted from the Markdown at test time.

A statement is every `psql ... -c "..."` argument of a shell block, every statement of a ```sql block, and a
bare SELECT typed into a shell block (the Meta guide's "Check via Supabase"). Only reads are kept (SELECT, and
COPY (SELECT ...) TO STDOUT); the runbooks' UPDATEs are operator repairs that the pipeline now does itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
RUNBOOKS_ENV = "ADPIPELINE_RUNBOOKS_DIR"
FENCE = re.compile(r"^\s*```(\w*)\s*\n(.*?)^\s*```", re.S | re.M)
PSQL = re.compile(r"psql\b(?P<args>[^\n]*?)-c\s+\"(?P<sql>[^\"]*)\"", re.S)
DATABASE = re.compile(r"(?:-d|--dbname)[\s=]+(\w+)")
READ = re.compile(r"^\s*(SELECT|COPY\s*\(\s*SELECT)\b", re.I)


@dataclass(frozen=True)
class Statement:
    runbook: str  # file name
    line: int  # where it starts in the file
    database: str | None  # psql -d, when given
    sql: str

    @property
    def label(self) -> str:
        return f"{self.runbook}:{self.line}"


def runbooks_dir() -> Path:
    return Path(os.environ.get(RUNBOOKS_ENV) or PROJECT.parent / "shared" / "seeds")


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip()


def statements(folder: Path | None = None) -> list[Statement]:
    found = []
    for path in sorted((folder or runbooks_dir()).glob("*.md")):
        text = path.read_text()
        for block in FENCE.finditer(text):
            lang, body = block[1].lower(), block[2]
            base = text.count("\n", 0, block.start(2)) + 1

            def add(sql: str, offset: int, database: str | None = None) -> None:
                offset += len(sql) - len(sql.lstrip())
                sql = _strip_comments(sql)
                if READ.match(sql):
                    found.append(Statement(path.name, base + body.count("\n", 0, offset), database, sql))

            if lang == "sql":
                for part in re.finditer(r"[^;]+;?", body):
                    add(part[0], part.start())
                continue
            quoted = []
            for call in PSQL.finditer(body):
                database = DATABASE.search(call["args"])
                add(call["sql"], call.start("sql"), database[1] if database else None)
                quoted.append(call.span())
            # a bare SELECT typed at a prompt, outside any psql -c "..."
            for bare in re.finditer(r"^[ \t]*SELECT\b.*?;", body, re.S | re.M | re.I):
                if not any(a <= bare.start() < b for a, b in quoted):
                    add(bare[0], bare.start())
    return found
