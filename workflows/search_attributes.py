"""Typed search attributes of the operator contract (DESIGN.md §4).

They are never encrypted: only codes, stages, dates and flags go here, never clue contents.
"""

from temporalio.common import SearchAttributeKey

DUCHA_KIND = SearchAttributeKey.for_keyword("DuchaKind")
DUCHA_STAGE = SearchAttributeKey.for_keyword("DuchaStage")
DUCHA_AGENCY = SearchAttributeKey.for_keyword("DuchaAgency")
DUCHA_UNIT = SearchAttributeKey.for_keyword("DuchaUnit")
DUCHA_DUE_AT = SearchAttributeKey.for_datetime("DuchaDueAt")
DUCHA_OVERDUE = SearchAttributeKey.for_bool("DuchaOverdue")
DUCHA_LIGHT = SearchAttributeKey.for_keyword("DuchaLight")
DUCHA_YEAR = SearchAttributeKey.for_int("DuchaYear")

ALL_KEYS = (
    DUCHA_KIND,
    DUCHA_STAGE,
    DUCHA_AGENCY,
    DUCHA_UNIT,
    DUCHA_DUE_AT,
    DUCHA_OVERDUE,
    DUCHA_LIGHT,
    DUCHA_YEAR,
)

# For `temporal server start-dev --search-attribute NAME=TYPE` and compose's admin-tools step.
CLI_TYPES = {
    "DuchaKind": "Keyword",
    "DuchaStage": "Keyword",
    "DuchaAgency": "Keyword",
    "DuchaUnit": "Keyword",
    "DuchaDueAt": "Datetime",
    "DuchaOverdue": "Bool",
    "DuchaLight": "Keyword",
    "DuchaYear": "Int",
}
