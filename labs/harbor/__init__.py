"""Harbor built from its source archives (../shared/upstream) into its offline installer, for the real-host tiers."""
