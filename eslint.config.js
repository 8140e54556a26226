// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'examples/*/dist/**',
      'node_modules/**',
      '.local/**',
      'coverage/**',
      '.stryker-tmp/**',
      'reports/**',
      'stryker-setup-*.js',
    ],
  },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    // functions/ and shared/ are the deployed app: they must not know they run locally.
    files: ['functions/**/*.ts', 'shared/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/local/**', '../local/*', '../../local/*'],
              message: 'The app must not depend on the local stack.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['shared/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/local/**'], message: 'The app must not depend on the local stack.' },
            { group: ['**/functions/**'], message: 'shared/ never imports functions/.' },
          ],
        },
      ],
    },
  },
);
