//! What a policy wants, from the fleet's numbers and the time. Pure: a webhook is returned as
//! a question for the controller to ask, so everything else is unit-tested.

use flotilla_api::autoscaler::{
    BasePolicy, BufferPolicy, ChainEntry, PolicyType, ScalingPolicy, SchedulePolicy, WebhookPolicy,
};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::cron::{Cron, duration_minutes};

/// The fleet as a policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetNumbers {
    pub replicas: i32,
    pub ready: i32,
    pub reserved: i32,
    pub allocated: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Scale to `replicas`; `limited` when min/max cut the policy's wish.
    Replicas {
        replicas: i32,
        limited: bool,
        policy: String,
    },
    /// Ask this webhook; `policy` names it for the status.
    Ask { webhook: WebhookPolicy, policy: String },
    /// No policy applies now (a schedule outside its window): leave the fleet alone.
    Nothing,
}

pub fn decide(policy: &ScalingPolicy, fleet: FleetNumbers, now: Timestamp) -> Result<Decision, String> {
    let name = policy.type_.as_str();
    match policy.type_ {
        PolicyType::Buffer => buffer(required(&policy.buffer, "buffer")?, fleet, name),
        PolicyType::Webhook => Ok(ask(required(&policy.webhook, "webhook")?, name)),
        PolicyType::Schedule => scheduled(required(&policy.schedule, "schedule")?, fleet, now, name),
        PolicyType::Chain => chain(required(&policy.chain, "chain")?, fleet, now),
    }
}

fn required<'a, T>(field: &'a Option<T>, name: &str) -> Result<&'a T, String> {
    field
        .as_ref()
        .ok_or_else(|| format!("the policy names {name} but does not set it"))
}

fn ask(webhook: &WebhookPolicy, policy: &str) -> Decision {
    Decision::Ask {
        webhook: webhook.clone(),
        policy: policy.to_owned(),
    }
}

fn chain(entries: &[ChainEntry], fleet: FleetNumbers, now: Timestamp) -> Result<Decision, String> {
    for entry in entries {
        let decision = match entry.type_ {
            PolicyType::Buffer => buffer(required(&entry.buffer, "buffer")?, fleet, &entry.id)?,
            PolicyType::Webhook => ask(required(&entry.webhook, "webhook")?, &entry.id),
            PolicyType::Schedule => scheduled(required(&entry.schedule, "schedule")?, fleet, now, &entry.id)?,
            PolicyType::Chain => return Err(format!("chain entry {} is a chain", entry.id)),
        };
        if decision != Decision::Nothing {
            return Ok(decision);
        }
    }
    Ok(Decision::Nothing)
}

fn scheduled(
    schedule: &SchedulePolicy,
    fleet: FleetNumbers,
    now: Timestamp,
    name: &str,
) -> Result<Decision, String> {
    if !active(schedule, now)? {
        return Ok(Decision::Nothing);
    }
    let BasePolicy {
        type_,
        buffer: b,
        webhook,
    } = &schedule.policy;
    match type_ {
        PolicyType::Buffer => buffer(required(b, "buffer")?, fleet, name),
        PolicyType::Webhook => Ok(ask(required(webhook, "webhook")?, name)),
        other => Err(format!("a schedule cannot apply a {} policy", other.as_str())),
    }
}

/// Inside `between` (when set) and inside a period that started at a cron time no longer ago
/// than `duration` (when set).
pub fn active(schedule: &SchedulePolicy, now: Timestamp) -> Result<bool, String> {
    if let Some(between) = &schedule.between {
        if between.start.as_ref().is_some_and(|start| now < start.0) {
            return Ok(false);
        }
        if between.end.as_ref().is_some_and(|end| now >= end.0) {
            return Ok(false);
        }
    }
    let Some(period) = &schedule.active_period else {
        return Ok(true);
    };
    let tz =
        TimeZone::get(&period.timezone).map_err(|_| format!("unknown timezone {:?}", period.timezone))?;
    let cron = Cron::parse(&period.start_cron)?;
    let minutes = duration_minutes(&period.duration)?;
    // Walk back minute by minute over one duration: was there a start in it? At most a week
    // of minutes, a few milliseconds of work, once per evaluation.
    let local = now.to_zoned(tz.clone()).datetime();
    let start_of_minute = local
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .map_err(|e| e.to_string())?;
    for back in 0..minutes {
        let t = start_of_minute
            .checked_sub(jiff::SignedDuration::from_mins(back))
            .map_err(|e| e.to_string())?;
        if cron.matches(t) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Keep the buffer Ready on top of what is in use (allocated and reserved servers): a count,
/// or a share of the fleet, so that `used` is `100 - pct` percent of it.
fn buffer(policy: &BufferPolicy, fleet: FleetNumbers, name: &str) -> Result<Decision, String> {
    let used = i64::from(fleet.allocated) + i64::from(fleet.reserved);
    let wanted = match &policy.buffer_size {
        IntOrString::Int(n) if *n >= 1 => used + i64::from(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| (1..=99).contains(p))
                .ok_or_else(|| format!("bufferSize {s:?} is not a percentage from 1% to 99%"))?;
            // ceil(used * 100 / (100 - pct))
            (used * 100 + (100 - pct) - 1) / (100 - pct)
        }
        IntOrString::Int(n) => return Err(format!("bufferSize {n} must be at least 1")),
    };
    let (min, max) = (i64::from(policy.min_replicas), i64::from(policy.max_replicas));
    if min > max {
        return Err(format!("minReplicas {min} is above maxReplicas {max}"));
    }
    let replicas = wanted.clamp(min, max);
    Ok(Decision::Replicas {
        replicas: i32::try_from(replicas).unwrap_or(i32::MAX),
        limited: replicas != wanted,
        policy: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_api::autoscaler::{ActivePeriod, Between};

    fn buffer_policy(size: IntOrString, min: i32, max: i32) -> ScalingPolicy {
        ScalingPolicy {
            type_: PolicyType::Buffer,
            buffer: Some(BufferPolicy {
                buffer_size: size,
                min_replicas: min,
                max_replicas: max,
            }),
            webhook: None,
            schedule: None,
            chain: None,
        }
    }

    fn fleet(allocated: i32) -> FleetNumbers {
        FleetNumbers {
            replicas: 10,
            ready: 10 - allocated,
            reserved: 0,
            allocated,
        }
    }

    fn replicas(decision: Result<Decision, String>) -> (i32, bool) {
        match decision {
            Ok(Decision::Replicas {
                replicas, limited, ..
            }) => (replicas, limited),
            other => panic!("expected replicas, got {other:?}"),
        }
    }

    #[test]
    fn a_count_buffer_keeps_that_many_ready_on_top_of_the_allocated() {
        let policy = buffer_policy(IntOrString::Int(5), 2, 20);
        assert_eq!(replicas(decide(&policy, fleet(0), Timestamp::now())), (5, false));
        assert_eq!(replicas(decide(&policy, fleet(7), Timestamp::now())), (12, false));
        assert_eq!(
            replicas(decide(&policy, fleet(18), Timestamp::now())),
            (20, true),
            "capped at max"
        );
        let floor = buffer_policy(IntOrString::Int(1), 4, 20);
        assert_eq!(
            replicas(decide(&floor, fleet(0), Timestamp::now())),
            (4, true),
            "raised to min"
        );
    }

    #[test]
    fn a_percentage_buffer_keeps_that_share_of_the_fleet_ready() {
        let policy = buffer_policy(IntOrString::String("25%".into()), 1, 100);
        // 9 in use should be 75 % of the fleet: 12 servers, 3 of them Ready.
        assert_eq!(replicas(decide(&policy, fleet(9), Timestamp::now())), (12, false));
        assert_eq!(
            replicas(decide(&policy, fleet(10), Timestamp::now())),
            (14, false),
            "rounded up"
        );
        assert_eq!(replicas(decide(&policy, fleet(0), Timestamp::now())), (1, true));
    }

    fn schedule(period: Option<ActivePeriod>, between: Option<Between>) -> SchedulePolicy {
        SchedulePolicy {
            between,
            active_period: period,
            policy: BasePolicy {
                type_: PolicyType::Buffer,
                buffer: Some(BufferPolicy {
                    buffer_size: IntOrString::Int(50),
                    min_replicas: 0,
                    max_replicas: 100,
                }),
                webhook: None,
            },
        }
    }

    #[test]
    fn a_schedule_applies_only_inside_its_window_in_its_timezone() {
        // Evenings 18:00-22:00 in Berlin (UTC+1 in November).
        let evening = ActivePeriod {
            timezone: "Europe/Berlin".into(),
            start_cron: "0 18 * * *".into(),
            duration: "4h".into(),
        };
        let s = schedule(Some(evening), None);
        let at = |hhmm: &str| {
            format!("2026-11-24T{hhmm}:00Z")
                .parse::<Timestamp>()
                .expect("time")
        };
        assert_eq!(active(&s, at("17:00")), Ok(true), "18:00 in Berlin");
        assert_eq!(active(&s, at("20:59")), Ok(true), "21:59 in Berlin");
        assert_eq!(active(&s, at("21:00")), Ok(false), "22:00 in Berlin: over");
        assert_eq!(active(&s, at("16:59")), Ok(false));
        let bounded = schedule(
            None,
            Some(Between {
                start: None,
                end: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at("12:00"))),
            }),
        );
        assert_eq!(active(&bounded, at("11:59")), Ok(true));
        assert_eq!(active(&bounded, at("12:00")), Ok(false));
        let unknown = ActivePeriod {
            timezone: "Mars/Olympus".into(),
            start_cron: "* * * * *".into(),
            duration: "1h".into(),
        };
        assert!(active(&schedule(Some(unknown), None), at("12:00")).is_err());
    }

    #[test]
    fn the_first_chain_entry_that_applies_wins() {
        let night = ActivePeriod {
            timezone: "UTC".into(),
            start_cron: "0 0 * * *".into(),
            duration: "6h".into(),
        };
        let policy = ScalingPolicy {
            type_: PolicyType::Chain,
            buffer: None,
            webhook: None,
            schedule: None,
            chain: Some(vec![
                ChainEntry {
                    id: "night".into(),
                    type_: PolicyType::Schedule,
                    buffer: None,
                    webhook: None,
                    schedule: Some(schedule(Some(night), None)),
                },
                ChainEntry {
                    id: "default".into(),
                    type_: PolicyType::Buffer,
                    buffer: Some(BufferPolicy {
                        buffer_size: IntOrString::Int(2),
                        min_replicas: 0,
                        max_replicas: 100,
                    }),
                    webhook: None,
                    schedule: None,
                },
            ]),
        };
        let at = |t: &str| t.parse::<Timestamp>().expect("time");
        match decide(&policy, fleet(1), at("2026-11-24T03:00:00Z")) {
            Ok(Decision::Replicas {
                replicas: 51, policy, ..
            }) => assert_eq!(policy, "night"),
            other => panic!("night entry expected: {other:?}"),
        }
        match decide(&policy, fleet(1), at("2026-11-24T12:00:00Z")) {
            Ok(Decision::Replicas {
                replicas: 3, policy, ..
            }) => assert_eq!(policy, "default"),
            other => panic!("default entry expected: {other:?}"),
        }
    }
}
