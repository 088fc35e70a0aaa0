"""adpipeline: Meta Marketing, Breezeway and GA4 into Postgres, dbt on top, watched by checks."""

__version__ = "0.1.0"

# Secrets never reach a log line: every record made in this process is redacted at creation
# (cheap, no I/O; see adpipeline.http.redact).
from adpipeline.http.redact import install_log_redaction  # noqa: E402

install_log_redaction()
