//! Heroku Scheduler as an add-on: it runs nothing and sets no config var. Having it is what
//! lets an app have scheduled jobs; the platform runs them (`kiln-platform`'s scheduler) and
//! removes them with the add-on.

use crate::{BoxFuture, Provider, ProvisionRequest, Provisioned, Result};
use kiln_model::addon::{Plan, SERVICES, Service};
use std::collections::BTreeMap;

pub struct SchedulerProvider;

fn provisioned() -> Provisioned {
    Provisioned {
        config: BTreeMap::new(),
        message: "Add jobs with `kiln schedules:add \"every 10 minutes\" -- COMMAND`.".into(),
    }
}

impl Provider for SchedulerProvider {
    fn service(&self) -> &'static Service {
        SERVICES
            .iter()
            .find(|s| s.name == "scheduler")
            .unwrap_or(&SERVICES[0])
    }

    fn provision<'a>(&'a self, _req: &'a ProvisionRequest) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async { Ok(provisioned()) })
    }

    fn change_plan<'a>(
        &'a self,
        _addon_id: &'a str,
        _plan: &'static Plan,
    ) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async { Ok(provisioned()) })
    }

    fn deprovision<'a>(&'a self, _addon_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn resume(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn held_before(&self, _t: std::time::SystemTime) -> Vec<String> {
        Vec::new()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
