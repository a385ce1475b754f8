module sample-policy

go 1.27
