#!/usr/bin/env python3
"""boto3 against a running `ekms dev`: every asymmetric key type signs and the Python
`cryptography` library (OpenSSL) verifies from GetPublicKey's DER; local RSAES-OAEP ciphertexts
decrypt in the service; DeriveSharedSecret matches ECDH; GenerateDataKeyPair's PKCS #8 matches its
PublicKey; a bad signature raises KMSInvalidSignatureException.

Run by hand (not in CI: it needs boto3 and cryptography from PyPI):
    pip install boto3 cryptography
    ekms dev --data-dir /tmp/ekms &            # prints the endpoint and credentials
    AWS_SHARED_CREDENTIALS_FILE=/tmp/ekms/credentials AWS_PROFILE=ekms \
    AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL_KMS=http://127.0.0.1:4599 \
        python3 tests/boto3/asymmetric.py
"""
import hashlib, os
import boto3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

kms = boto3.client("kms")
H = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
cases = [("RSA_2048", ["RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PSS_SHA_512"]),
         ("RSA_3072", ["RSASSA_PKCS1_V1_5_SHA_256"]), ("RSA_4096", ["RSASSA_PSS_SHA_384"]),
         ("ECC_NIST_P256", ["ECDSA_SHA_256"]), ("ECC_NIST_P384", ["ECDSA_SHA_384"]),
         ("ECC_NIST_P521", ["ECDSA_SHA_512"]), ("ECC_SECG_P256K1", ["ECDSA_SHA_256"])]
msg = b"boto3 says hello to the enclave"
n = 0
for spec, algs in cases:
    key = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    pub = serialization.load_der_public_key(kms.get_public_key(KeyId=key)["PublicKey"])
    for alg in algs:
        h = H[alg[-3:]]
        for mt in ("RAW", "DIGEST"):
            m = msg if mt == "RAW" else hashlib.new("sha" + alg[-3:], msg).digest()
            sig = kms.sign(KeyId=key, Message=m, MessageType=mt, SigningAlgorithm=alg)["Signature"]
            pre = utils.Prehashed(h()) if mt == "DIGEST" else h()
            if alg.startswith("ECDSA"):
                pub.verify(sig, m, ec.ECDSA(pre))
            elif "PSS" in alg:
                pub.verify(sig, m, padding.PSS(padding.MGF1(h()), h.digest_size), pre)
            else:
                pub.verify(sig, m, padding.PKCS1v15(), pre)
            assert kms.verify(KeyId=key, Message=m, MessageType=mt, Signature=sig, SigningAlgorithm=alg)["SignatureValid"]
            n += 1
print(f"boto3: {n} signatures verified by cryptography")
key = kms.create_key(KeySpec="RSA_3072", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
pub = serialization.load_der_public_key(kms.get_public_key(KeyId=key)["PublicKey"])
for alg, h in (("RSAES_OAEP_SHA_1", hashes.SHA1), ("RSAES_OAEP_SHA_256", hashes.SHA256)):
    pt = os.urandom(100)
    ct = pub.encrypt(pt, padding.OAEP(padding.MGF1(h()), h(), None))
    assert kms.decrypt(KeyId=key, CiphertextBlob=ct, EncryptionAlgorithm=alg)["Plaintext"] == pt
print("boto3: local OAEP ciphertexts decrypt in the service")
key = kms.create_key(KeySpec="ECC_NIST_P384", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]["KeyId"]
peer = serialization.load_der_public_key(kms.get_public_key(KeyId=key)["PublicKey"])
mine = ec.generate_private_key(ec.SECP384R1())
der = mine.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
z = kms.derive_shared_secret(KeyId=key, KeyAgreementAlgorithm="ECDH", PublicKey=der)["SharedSecret"]
assert z == mine.exchange(ec.ECDH(), peer)
print("boto3: DeriveSharedSecret matches cryptography ECDH")
kek = kms.create_key()["KeyMetadata"]["KeyId"]
pair = kms.generate_data_key_pair(KeyId=kek, KeyPairSpec="ECC_NIST_P521")
priv = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], None)
assert priv.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == pair["PublicKey"]
assert kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"])["Plaintext"] == pair["PrivateKeyPlaintext"]
print("boto3: GenerateDataKeyPair PKCS#8 matches its PublicKey")
try:
    kms.verify(KeyId=kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"],
               Message=b"x", Signature=b"\x30\x06\x02\x01\x01\x02\x01\x01", SigningAlgorithm="ECDSA_SHA_256")
    raise SystemExit("expected KMSInvalidSignatureException")
except kms.exceptions.KMSInvalidSignatureException:
    print("boto3: bad signature -> KMSInvalidSignatureException")
