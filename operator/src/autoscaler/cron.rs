//! Five-field cron expressions (minute hour day-of-month month day-of-week) for schedule
//! windows: `*`, numbers, `a-b` ranges, `,` lists and `/n` steps. As in cron, when both
//! day-of-month and day-of-week are restricted, a day matching either one matches.

use jiff::civil::DateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "{expr:?} needs five fields: minute hour day-of-month month day-of-week"
            ));
        };
        Ok(Self {
            minutes: field(minute, 0, 59, "minute")?,
            hours: field(hour, 0, 23, "hour")?,
            days: field(day, 1, 31, "day-of-month")?,
            months: field(month, 1, 12, "month")?,
            // 7 is Sunday too.
            weekdays: {
                let bits = field(weekday, 0, 7, "day-of-week")?;
                (bits | (bits >> 7)) & 0x7f
            },
            days_restricted: day != "*",
            weekdays_restricted: weekday != "*",
        })
    }

    pub fn matches(&self, t: DateTime) -> bool {
        let bit = |set: u64, v: i8| set & (1u64 << v.max(0)) != 0;
        let day = bit(self.days, t.day());
        let weekday = bit(self.weekdays, t.weekday().to_sunday_zero_offset());
        let day_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        };
        bit(self.minutes, t.minute()) && bit(self.hours, t.hour()) && bit(self.months, t.month()) && day_ok
    }
}

/// The set of values a field allows, as bits.
fn field(text: &str, min: u32, max: u32, name: &str) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("{name}: bad step in {part:?}"))?;
                if step == 0 {
                    return Err(format!("{name}: step 0 in {part:?}"));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (number(a, name)?, number(b, name)?),
                None => {
                    let v = number(range, name)?;
                    // `5/15` means from 5 to the end, every 15.
                    (v, if step > 1 { max } else { v })
                }
            },
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{name}: {part:?} is outside {min}-{max}"));
        }
        for v in (lo..=hi).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

fn number(text: &str, name: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("{name}: {text:?} is not a number"))
}

/// `2h`, `90m`, `1h30m` as minutes.
pub fn duration_minutes(text: &str) -> Result<i64, String> {
    let bad = || format!("duration {text:?} must be hours and/or minutes, such as 2h, 90m or 1h30m");
    let (hours, rest) = match text.split_once('h') {
        Some((h, rest)) => (h.parse::<i64>().map_err(|_| bad())?, rest),
        None => (0, text),
    };
    let minutes = match rest.strip_suffix('m') {
        Some(m) => m.parse::<i64>().map_err(|_| bad())?,
        None if rest.is_empty() => 0,
        None => return Err(bad()),
    };
    let total = hours * 60 + minutes;
    if total <= 0 || total > 7 * 24 * 60 {
        return Err(format!("duration {text:?} must be between 1 minute and a week"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn fields_allow_lists_ranges_and_steps() {
        let cron = Cron::parse("*/15 9-17 * * 1-5").expect("parses");
        assert!(cron.matches(date(2026, 11, 24).at(9, 30, 0, 0)), "Tuesday 09:30");
        assert!(
            !cron.matches(date(2026, 11, 24).at(9, 31, 0, 0)),
            "not on a quarter hour"
        );
        assert!(!cron.matches(date(2026, 11, 24).at(18, 0, 0, 0)), "after hours");
        assert!(!cron.matches(date(2026, 11, 22).at(10, 0, 0, 0)), "Sunday");
        let sunday = Cron::parse("0 20 * * 7").expect("parses");
        assert!(sunday.matches(date(2026, 11, 22).at(20, 0, 0, 0)), "7 is Sunday");
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_given() {
        let cron = Cron::parse("0 0 1 * 1").expect("parses");
        assert!(
            cron.matches(date(2026, 12, 1).at(0, 0, 0, 0)),
            "the 1st (a Tuesday)"
        );
        assert!(cron.matches(date(2026, 11, 23).at(0, 0, 0, 0)), "a Monday");
        assert!(!cron.matches(date(2026, 11, 24).at(0, 0, 0, 0)));
    }

    #[test]
    fn bad_expressions_say_which_field() {
        for (expr, says) in [
            ("* * *", "five fields"),
            ("61 * * * *", "minute"),
            ("* * * 13 *", "month"),
            ("*/0 * * * *", "step"),
        ] {
            let err = Cron::parse(expr).expect_err(expr);
            assert!(err.contains(says), "{expr}: {err}");
        }
    }

    #[test]
    fn durations_are_hours_and_minutes() {
        assert_eq!(duration_minutes("2h"), Ok(120));
        assert_eq!(duration_minutes("90m"), Ok(90));
        assert_eq!(duration_minutes("1h30m"), Ok(90));
        assert!(duration_minutes("").is_err());
        assert!(duration_minutes("8d").is_err());
        assert!(duration_minutes("200h").is_err());
    }
}
