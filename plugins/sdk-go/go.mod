module berth-sdk

go 1.27
