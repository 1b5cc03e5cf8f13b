"""Fixed codes shared by every process."""

from enum import StrEnum


class AgencyCode(StrEnum):
    LAW_OFFICE = "law_office"  # 县委依法治县办
    DISCIPLINE = "discipline"  # 县纪委监委
    COURT = "court"  # 县法院
    PROCURATORATE = "procuratorate"  # 县检察院
    JUSTICE = "justice"  # 县司法局
    TOUR_OFFICE = "tour_office"  # 县委巡察办
    COORDINATION_GROUP = "coordination_group"  # 执法协调小组
    COUNTY_COMMITTEE = "county_committee"  # 县委


AGENCY_NAMES: dict[AgencyCode, str] = {
    AgencyCode.LAW_OFFICE: "县委依法治县办",
    AgencyCode.DISCIPLINE: "县纪委监委",
    AgencyCode.COURT: "县人民法院",
    AgencyCode.PROCURATORATE: "县人民检察院",
    AgencyCode.JUSTICE: "县司法局",
    AgencyCode.TOUR_OFFICE: "县委巡察办",
    AgencyCode.COORDINATION_GROUP: "县委全面依法治县委员会执法协调小组",
    AgencyCode.COUNTY_COMMITTEE: "县委",
}

# Unit codes, problem numbers and clue numbers share this shape: safe in IDs and search attributes.
CODE_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"
NUMBER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"
