"""Adapters: the only code that touches AWS (boto3, botocore) or the network (httpx). Each implements a port."""
