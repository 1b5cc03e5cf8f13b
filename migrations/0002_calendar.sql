-- Working-day calendar: official schedules from the State Council notice, one set per year.
-- A year present in calendar_years replaces the `holidays` package's base rules for that year
-- (see docs/calendar.md). A year's days are replaced as a whole, in one transaction.
CREATE TABLE calendar_years (
    year       integer PRIMARY KEY CHECK (year BETWEEN 1950 AND 2100),
    source     text NOT NULL,               -- notice title, e.g. 国务院办公厅关于2026年部分节假日安排的通知
    notice_no  text,                        -- e.g. 国办发明电〔2024〕12号
    issued_on  date,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE calendar_days (
    day      date PRIMARY KEY,
    year     integer NOT NULL REFERENCES calendar_years (year) ON DELETE CASCADE,
    workday  boolean NOT NULL,              -- false: 放假; true: 调休上班 (a working weekend)
    name     text NOT NULL,
    CHECK (EXTRACT(YEAR FROM day) = year)
);

CREATE INDEX calendar_days_year ON calendar_days (year);
