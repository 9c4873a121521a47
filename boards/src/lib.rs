//! `rsim-boards`: onboard inference loop, telemetry and flashing protocol.
#![cfg_attr(not(feature = "std"), no_std)]
