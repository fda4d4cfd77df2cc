"""warehouse-loader: committed lake batches into the warehouse, exactly once."""
