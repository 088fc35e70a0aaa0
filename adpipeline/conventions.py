"""What every asset of this project carries (a test walks the Definitions and enforces it)."""

OWNER = "team:data-engineering"
# kinds shown in the UI: the technology that computes the asset and where it lands
LANDING_KINDS = {"python", "postgres"}
