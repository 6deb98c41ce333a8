module aiproxy-bench

go 1.19
