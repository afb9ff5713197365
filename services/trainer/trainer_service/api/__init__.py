"""HTTP routes, one module per resource; the work lives in the plain modules beside this one."""
