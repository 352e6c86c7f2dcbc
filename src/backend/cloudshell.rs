//! CloudShell service-alias backend (not built yet: see issue "Service-alias backend").

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::lock::{Attempt, Backend, Lease, LockName, LockRequest, Renewal, SlotState, WaitOutcome};

#[derive(Debug, Clone)]
pub struct CloudShellConfig {
    pub url: String,
}

impl CloudShellConfig {
    /// Inside a CloudShell script no URL is needed: server, token and
    /// reservation come from the environment CloudShell provides.
    pub fn from_script_environment(_url: &str) -> Result<Option<Self>> {
        Ok(None)
    }

    pub fn parse(url: &str) -> Result<Self> {
        Ok(CloudShellConfig { url: url.to_owned() })
    }
}

pub struct CloudShellBackend;
pub struct CloudShellLease;

impl Lease for CloudShellLease {
    fn slot(&self) -> u32 {
        1
    }
    fn fence(&self) -> Option<u64> {
        None
    }
    fn expires_at(&self) -> Option<Instant> {
        None
    }
}

impl CloudShellBackend {
    pub async fn connect(_config: CloudShellConfig) -> Result<Self> {
        Err(Error::unavailable("the cloudshell backend is not built yet"))
    }
}

impl Backend for CloudShellBackend {
    type Lease = CloudShellLease;
    async fn try_acquire(&mut self, _: &LockRequest, _: u32) -> Result<Attempt<CloudShellLease>> {
        unreachable!()
    }
    async fn wait(&mut self, _: &LockRequest, _: u32) -> Result<WaitOutcome<CloudShellLease>> {
        unreachable!()
    }
    fn renew_interval(&self, _: &LockRequest) -> Option<Duration> {
        None
    }
    async fn renew(&mut self, _: &mut CloudShellLease) -> Result<Renewal> {
        unreachable!()
    }
    async fn release(&mut self, _: CloudShellLease) -> Result<()> {
        unreachable!()
    }
    async fn status(&mut self, _: &LockName, _: Option<u32>) -> Result<Vec<SlotState>> {
        unreachable!()
    }
    async fn list(&mut self) -> Result<Vec<SlotState>> {
        unreachable!()
    }
    async fn force_release(&mut self, _: &LockName, _: Option<u32>) -> Result<Vec<SlotState>> {
        unreachable!()
    }
    fn display_url(&self) -> String {
        String::new()
    }
}
